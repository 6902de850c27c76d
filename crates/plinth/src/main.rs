//! The `plinth` binary: a thin shell over the library crates.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
