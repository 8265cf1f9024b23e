//! The `tollgate` binary: everything is in the library (`cli::main`).

fn main() -> std::process::ExitCode {
    tollgate::cli::main()
}
