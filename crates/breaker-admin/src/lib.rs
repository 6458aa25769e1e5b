#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod admin;
mod api;
mod auth;
mod dashboard;
mod error;
mod feed;
mod hub;
mod stream;
mod tracker;
mod view;

pub use admin::{Admin, AdminBuilder};
pub use auth::Token;
pub use error::BuildError;
pub use feed::AdminObserver;
pub use hub::AdminStats;
