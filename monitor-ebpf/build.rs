use which::which;

/// Cargo cannot see that the program's object file depends on bpf-linker
/// itself: rebuild when the linker changes (a new LLVM emits other code).
/// (The BPF CPU level is set by the linker wrapper `bpf-linker-v3`.)
fn main() {
    match which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(err) => println!("cargo:warning=bpf-linker not found ({err}); run `cargo xtask setup`"),
    }
    println!("cargo:rerun-if-changed=bpf-linker-v3");
}
