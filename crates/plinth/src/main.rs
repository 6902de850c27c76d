//! The `plinth` binary: a thin shell over the library crates.

mod cli;
mod contract_cmd;
mod migrate_cmd;

fn main() -> std::process::ExitCode {
    cli::main()
}
