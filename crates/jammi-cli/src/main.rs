//! The `jammi` binary; the tool itself is the `jammi_cli` library.

fn main() -> std::process::ExitCode {
    jammi_cli::main()
}
