//! `pouwd start --config FILE.toml` and `pouwd config example`: a TOML
//! file that sets `start`'s flags, and the default data dir.
//!
//! Each key of the file is a long flag of `pouwd start` without its
//! dashes, and its value is the flag's: a string or an integer, `true` or
//! `false` for a flag that takes no value, a list of strings for a flag
//! that may be repeated. The file's keys become flags added to the command
//! line, but those the command line sets itself, so clap checks them with
//! the same parsers and messages, and a flag given on the command line wins.
//! The keys are read from clap's own description of `start`, so a flag added
//! to `StartArgs` is a config key with no second edit, and the example
//! lists it.

use super::Cli;
use anyhow::{bail, Context, Result};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The flag that names the file; not a key of the file itself.
const CONFIG_FLAG: &str = "config";

#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Print an example config file for `pouwd start --config`: every flag
    /// of `start`, its help and its default.
    Example,
}

pub fn run(args: ConfigArgs) -> Result<()> {
    match args.command {
        ConfigCommand::Example => print!("{}", example()),
    }
    Ok(())
}

/// The data dir when `--data-dir` is not given: `$XDG_DATA_HOME/pouwd`,
/// else `$HOME/.local/share/pouwd` (the XDG base directory convention),
/// else `pouwd-data` in the working directory.
pub fn default_data_dir() -> PathBuf {
    let absolute = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(data) = absolute("XDG_DATA_HOME") {
        return data.join("pouwd");
    }
    if let Some(home) = absolute("HOME") {
        return home.join(".local/share/pouwd");
    }
    PathBuf::from("pouwd-data")
}

/// The `start` subcommand as clap describes it, with the global flags
/// (`--log-level`, `--log-format`) it takes.
fn start_command() -> clap::Command {
    let mut command = Cli::command();
    // Building propagates the global flags to the subcommands.
    command.build();
    command
        .find_subcommand("start")
        .cloned()
        .unwrap_or_else(|| unreachable!("pouwd has a start command"))
}

/// The flags of `start` that a config file may set: every long flag but
/// `--config` and `--help`.
fn settable(command: &clap::Command) -> Vec<&clap::Arg> {
    command
        .get_arguments()
        .filter(|arg| arg.get_long().is_some_and(|long| long != CONFIG_FLAG))
        .filter(|arg| !matches!(arg.get_action(), ArgAction::Help | ArgAction::Version))
        .collect()
}

/// When the command line is `pouwd start --config FILE …`, the command
/// line with FILE's flags added after its own, leaving out each flag the
/// command line sets itself, and FILE; `None` otherwise. (`start` takes no
/// positional arguments, and the file's flags are written `--flag=value`,
/// so they read the same wherever they are added.)
pub fn merge(args: &[OsString], matches: &ArgMatches) -> Result<Option<(Vec<OsString>, PathBuf)>> {
    let Some(("start", start)) = matches.subcommand() else {
        return Ok(None);
    };
    let Some(path) = start.get_one::<PathBuf>(CONFIG_FLAG) else {
        return Ok(None);
    };
    let from_file = flags(path, |id| {
        start.value_source(id) == Some(ValueSource::CommandLine)
    })?;
    let mut merged = args.to_vec();
    merged.extend(from_file);
    Ok(Some((merged, path.clone())))
}

/// The flags the config file at `path` sets, but those for which
/// `on_command_line` is true (called with clap's id of the flag).
fn flags(path: &Path, on_command_line: impl Fn(&str) -> bool) -> Result<Vec<OsString>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("config file {}", path.display()))?;
    table_flags(&table, on_command_line).with_context(|| format!("config file {}", path.display()))
}

fn table_flags(
    table: &toml::Table,
    on_command_line: impl Fn(&str) -> bool,
) -> Result<Vec<OsString>> {
    let command = start_command();
    let known = settable(&command);
    let mut out = Vec::new();
    for (key, value) in table {
        let Some(arg) = known.iter().find(|a| a.get_long() == Some(key.as_str())) else {
            let names: Vec<_> = known.iter().filter_map(|a| a.get_long()).collect();
            bail!(
                "unknown key {key:?}; the keys are the flags of `pouwd start`: {}",
                names.join(", ")
            );
        };
        if on_command_line(arg.get_id().as_str()) {
            continue;
        }
        let flag = format!("--{key}");
        match (arg.get_action(), value) {
            (ArgAction::SetTrue, toml::Value::Boolean(on)) => {
                if *on {
                    out.push(flag.into());
                }
            }
            (ArgAction::SetTrue, _) => bail!("{key} takes true or false"),
            (ArgAction::Append, toml::Value::Array(items)) => {
                for item in items {
                    out.push(format!("{flag}={}", scalar(key, item)?).into());
                }
            }
            (_, value) => out.push(format!("{flag}={}", scalar(key, value)?).into()),
        }
    }
    Ok(out)
}

/// A string or an integer as the flag's text.
fn scalar(key: &str, value: &toml::Value) -> Result<String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(n) => Ok(n.to_string()),
        other => bail!(
            "{key} takes a string or an integer, not a {}",
            other.type_str()
        ),
    }
}

/// Example values for the flags without a default, where the flag's
/// value name says too little.
fn example_value(long: &str) -> Option<&'static str> {
    Some(match long {
        "chain" => "\"devnet\"",
        "listen" => "\"0.0.0.0:5000\"",
        "peers" => "\"/etc/pouwd/p2p_network.json\"",
        "peer" => "[\"203.0.113.7:5000\", \"ID@198.51.100.2:5000\"]",
        "api" => "\"127.0.0.1:8645\"",
        "masternode-config" => "\"/etc/pouwd/masternode.json\"",
        "data-dir" => "\"/var/lib/pouwd\"",
        "stop-at-height" => "1000",
        "log-level" => "\"info,p2p=debug\"",
        _ => return None,
    })
}

/// A documented config file: every flag of `start` with its help, set to
/// its default, or commented out when it has none.
pub fn example() -> String {
    let command = start_command();
    let mut out = String::from(
        "# pouwd start --config FILE: each key is a flag of `pouwd start` without\n\
         # its dashes. A flag given on the command line wins over the file.\n\
         # Flags without a value take true or false; --peer, which may be\n\
         # repeated, takes a list. Relative paths are taken from the working\n\
         # directory, as on the command line.\n",
    );
    for arg in settable(&command) {
        let Some(long) = arg.get_long() else { continue };
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(ToString::to_string)
            .unwrap_or_default();
        // clap drops the full stop of a one-line help; a comment keeps it.
        let help = if help.ends_with('.') {
            help
        } else {
            format!("{help}.")
        };
        out.push('\n');
        for line in wrap(&help, 74) {
            out.push_str(&format!("# {line}\n"));
        }
        let defaults = arg.get_default_values();
        let value_name = arg
            .get_value_names()
            .and_then(|names| names.first())
            .map_or("VALUE".to_string(), ToString::to_string);
        let line = match (arg.get_action(), defaults) {
            (ArgAction::SetTrue, _) => format!("{long} = false"),
            // The default data dir depends on who runs the node.
            _ if long == "data-dir" => format!(
                "# {long} = {}    (default: {})",
                example_value(long).unwrap_or("\"DIR\""),
                default_data_dir().display()
            ),
            (_, [default]) => {
                let text = default.to_string_lossy();
                if text.parse::<i64>().is_ok() {
                    format!("{long} = {text}")
                } else {
                    format!("{long} = {text:?}")
                }
            }
            (ArgAction::Append, _) => format!(
                "# {long} = {}",
                example_value(long).unwrap_or(&format!("[\"{value_name}\"]"))
            ),
            _ => format!(
                "# {long} = {}",
                example_value(long).unwrap_or(&format!("\"{value_name}\""))
            ),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The words of `text` in lines of at most `width` characters (a longer
/// word has a line of its own); paragraphs stay apart.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.split("\n\n") {
        if !lines.is_empty() {
            lines.push(String::new());
        }
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + word.len() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        if !line.is_empty() {
            lines.push(line);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_start(flags: Vec<OsString>) -> Result<ArgMatches, clap::Error> {
        let mut args: Vec<OsString> = vec!["pouwd".into(), "start".into()];
        args.extend(flags);
        Cli::command().try_get_matches_from(args)
    }

    #[test]
    fn the_example_names_every_flag_of_start_and_is_a_valid_config() {
        let text = example();
        let command = start_command();
        for arg in settable(&command) {
            let long = arg.get_long().unwrap();
            assert!(
                text.contains(&format!("\n{long} = ")) || text.contains(&format!("\n# {long} = ")),
                "the example lacks --{long}:\n{text}"
            );
        }
        let table: toml::Table = toml::from_str(&text).unwrap();
        assert!(table.contains_key("mine-threads"), "{table:?}");
        let flags = table_flags(&table, |_| false).unwrap();
        parse_start(flags).unwrap();

        // Every commented key, uncommented, is a valid config too.
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if rest.split(' ').nth(1) == Some("=") => {
                    rest.split("    (default").next().unwrap().to_string()
                }
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let table: toml::Table = toml::from_str(&uncommented).unwrap();
        for arg in settable(&command) {
            let long = arg.get_long().unwrap();
            assert!(table.contains_key(long), "--{long} not settable");
        }
        let flags = table_flags(&table, |_| false).unwrap();
        assert!(
            flags.iter().any(|f| f == "--peer=203.0.113.7:5000"),
            "{flags:?}"
        );
    }

    #[test]
    fn every_kind_of_value_becomes_its_flag() {
        let table: toml::Table = toml::from_str(
            "mine = true\nmasternode = false\nban-secs = 5\nchain = \"regtest\"\n\
             peer = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n",
        )
        .unwrap();
        let flags = table_flags(&table, |_| false).unwrap();
        let flags: Vec<_> = flags.iter().map(|f| f.to_str().unwrap()).collect();
        assert_eq!(
            flags,
            [
                "--ban-secs=5",
                "--chain=regtest",
                "--mine",
                "--peer=127.0.0.1:1",
                "--peer=127.0.0.1:2"
            ]
        );
        // A flag the command line sets is left out.
        let flags = table_flags(&table, |id| id == "chain").unwrap();
        assert!(!flags.iter().any(|f| f == "--chain=regtest"), "{flags:?}");
    }

    #[test]
    fn bad_keys_and_values_are_named() {
        for (text, wanted) in [
            ("minr = true", "unknown key \"minr\""),
            ("config = \"x.toml\"", "unknown key \"config\""),
            ("mine = 1", "mine takes true or false"),
            (
                "ban-secs = 1.5",
                "ban-secs takes a string or an integer, not a float",
            ),
        ] {
            let table: toml::Table = toml::from_str(text).unwrap();
            let error = format!("{:#}", table_flags(&table, |_| false).unwrap_err());
            assert!(error.contains(wanted), "{text}: {error}");
        }
        let table: toml::Table = toml::from_str("minr = true").unwrap();
        let error = format!("{:#}", table_flags(&table, |_| false).unwrap_err());
        assert!(error.contains("mine-threads"), "lists the keys: {error}");
    }
}
