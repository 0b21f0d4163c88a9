use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = pouwd::cli::Cli::parse();
    match pouwd::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
