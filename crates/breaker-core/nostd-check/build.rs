//! The C runtime's entry calls `main`; `memcpy` and friends come from the platform's libc
//! (not from Rust's std).
fn main() {
    println!("cargo:rustc-link-lib=c");
}
