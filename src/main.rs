use std::process::ExitCode;

fn main() -> ExitCode {
    quiet_broken_pipe();
    let cli = pouwd::cli::parse();
    if let Err(error) = pouwd::logs::init(&cli.logs) {
        // A bad RUST_LOG is a bad argument: clap's exit code.
        eprintln!("error: {error:#}");
        return ExitCode::from(2);
    }
    match pouwd::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => match error.downcast_ref::<pouwd::cli::ExitCode>() {
            // The command said why already.
            Some(exit) => ExitCode::from(exit.code),
            // A value clap let through that the command refused: exit 2,
            // as for the values clap refuses itself.
            None if error
                .downcast_ref::<pouwd::cli::InvalidArgument>()
                .is_some() =>
            {
                eprintln!("error: {}", pouwd::cli::error_text(&error));
                ExitCode::from(2)
            }
            None => {
                eprintln!("error: {}", pouwd::cli::error_text(&error));
                ExitCode::FAILURE
            }
        },
    }
}

/// `pouwd status | head` closes stdout before the command is done, and
/// `println!` then panics. A reader that went away is not an error of
/// the node's: exit with the status of a process that SIGPIPE ended
/// (128 + 13), as other command-line tools do, without a backtrace.
fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map_or("", String::as_str);
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
