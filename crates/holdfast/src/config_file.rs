//! The configuration file (`--config FILE` or `HOLDFAST_CONFIG`) and
//! `holdfast config show` / `config sample`.
//!
//! Precedence, lowest first: built-in defaults, the file, the environment
//! (`HOLDFAST_*` and the familiar `REDIS_URL`, `DATABASE_URL`, …), flags.
//! The file's values become the flags' defaults before the command line is
//! parsed, so clap applies the environment and the flags over them as it
//! always does, and every value is checked by the same parser as its flag.
//!
//! The file is TOML. Its keys are the flags' names with `_` (`redis_url`
//! for `--redis-url`). Keys at the top apply to every role that has the
//! setting; a `[worker]`, `[ingress]`, `[api]`, `[exporter]` or
//! `[dashboard]` table holds one role's own, and wins over the top:
//!
//! ```toml
//! redis_url = "rediss://cache.internal:6380/"
//! partitions = 4
//!
//! [worker]
//! concurrency = 32
//! ```
//!
//! An unknown key or table is an error that names it, so a misspelt
//! setting never goes unnoticed.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Args, Command, CommandFactory, FromArgMatches};

use crate::cli::{Cli, MetricsSinkArgs, RedisArgs};

/// The environment variable that names the configuration file.
pub const CONFIG_ENV: &str = "HOLDFAST_CONFIG";

/// The roles a file configures, in the order `config show` prints them.
pub const ROLES: [&str; 5] = ["ingress", "worker", "api", "exporter", "dashboard"];

/// Settings (argument ids) that go on the top of a file rather than in a
/// role's table: how to reach Redis and how metrics reach it.
fn shared_ids() -> BTreeSet<String> {
    let shared = MetricsSinkArgs::augment_args(RedisArgs::augment_args(Command::new("shared")));
    shared
        .get_arguments()
        .map(|arg| arg.get_id().to_string())
        .collect()
}

/// A configuration file, read and checked against the roles' settings.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
    /// Keys on the top, with their values as a flag would take them.
    shared: BTreeMap<String, Vec<String>>,
    /// `[role]` tables.
    roles: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

impl ConfigFile {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read the configuration file {}", path.display()))?;
        Self::parse(path, &text)
    }

    /// Parses `text`, the contents of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let table: toml::Table = text
            .parse()
            .with_context(|| format!("{} is not valid TOML", path.display()))?;
        let mut file = ConfigFile {
            path: path.to_owned(),
            shared: BTreeMap::new(),
            roles: BTreeMap::new(),
        };
        for (key, value) in table {
            match value {
                toml::Value::Table(role) => {
                    if !ROLES.contains(&key.as_str()) {
                        bail!(
                            "{}: unknown table [{key}]; the tables are [{}]",
                            path.display(),
                            ROLES.join("], [")
                        );
                    }
                    let mut settings = BTreeMap::new();
                    for (name, value) in role {
                        let values = flag_values(&value)
                            .with_context(|| format!("{}: [{key}] {name}", path.display()))?;
                        settings.insert(name.replace('-', "_"), values);
                    }
                    file.roles.insert(key, settings);
                }
                value => {
                    let values = flag_values(&value)
                        .with_context(|| format!("{}: {key}", path.display()))?;
                    file.shared.insert(key.replace('-', "_"), values);
                }
            }
        }
        Ok(file)
    }

    /// The file's path, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file sets `id` for `role` (in its table or on the top).
    pub fn sets(&self, role: &str, id: &str) -> bool {
        self.shared.contains_key(id) || self.roles.get(role).is_some_and(|t| t.contains_key(id))
    }

    /// The values the file gives the settings of a command that has the
    /// arguments `ids`: the top's, then the `role` table's over them.
    fn values_for(
        &self,
        role: Option<&str>,
        ids: &BTreeSet<String>,
    ) -> BTreeMap<String, Vec<String>> {
        let mut values: BTreeMap<String, Vec<String>> = self
            .shared
            .iter()
            .filter(|(id, _)| ids.contains(*id))
            .map(|(id, v)| (id.clone(), v.clone()))
            .collect();
        if let Some(table) = role.and_then(|role| self.roles.get(role)) {
            values.extend(
                table
                    .iter()
                    .filter(|(id, _)| ids.contains(*id))
                    .map(|(id, v)| (id.clone(), v.clone())),
            );
        }
        values
    }

    /// Checks every key and value against the roles of `cli`: each key is
    /// a setting of a role (of its table's role), each value parses as its
    /// flag would.
    fn check(&self, cli: &Command) -> Result<()> {
        let mut problems = Vec::new();
        let mut known_anywhere = BTreeSet::new();
        for role in ROLES {
            let command = role_command(cli, role);
            let ids = ids_of(command);
            known_anywhere.extend(ids.iter().cloned());
            if let Some(table) = self.roles.get(role) {
                for id in table.keys().filter(|id| !ids.contains(*id)) {
                    problems.push(format!(
                        "[{role}] {id}: not a setting of the {role}; its settings are {}",
                        ids.iter().cloned().collect::<Vec<_>>().join(", ")
                    ));
                }
            }
            for (id, values) in self.values_for(Some(role), &ids) {
                let arg = command
                    .get_arguments()
                    .find(|arg| arg.get_id() == id.as_str())
                    .expect("an id of this command");
                for value in values {
                    if let Err(reason) = check_value(arg, &value) {
                        // The value and clap's words about it, without
                        // any secret they hold.
                        let shown = shown_value(&value, arg.is_hide_env_values_set());
                        let reason = reason.replace(&value, &shown);
                        let place = if self.shared.contains_key(&id)
                            && !self.roles.get(role).is_some_and(|t| t.contains_key(&id))
                        {
                            id.clone()
                        } else {
                            format!("[{role}] {id}")
                        };
                        let problem = format!("{place} = {shown:?}: {reason}");
                        if !problems.contains(&problem) {
                            problems.push(problem);
                        }
                    }
                }
            }
        }
        for id in self
            .shared
            .keys()
            .filter(|id| !known_anywhere.contains(*id))
        {
            problems.push(format!("{id}: not a setting of any role"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            bail!(
                "the configuration file {} has mistakes:\n  {}\n(`holdfast config sample` prints every setting)",
                self.path.display(),
                problems.join("\n  ")
            )
        }
    }

    /// `cli` with the file's values as the defaults of the flags they set:
    /// in every role, in `config show ROLE`, in `up` and in the
    /// dead-letters commands (the shared settings only for those two).
    pub fn apply(&self, cli: Command) -> Result<Command> {
        self.check(&cli)?;
        let mut cli = cli;
        for role in ROLES {
            cli = cli.mut_subcommand(role, |command| self.apply_to(command, Some(role)));
        }
        cli = cli.mut_subcommand("up", |command| self.apply_to(command, None));
        let dead_letters: Vec<String> = cli
            .find_subcommand("dead-letters")
            .map(|c| {
                c.get_subcommands()
                    .map(|s| s.get_name().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        cli = cli.mut_subcommand("dead-letters", |mut command| {
            for name in &dead_letters {
                command = command.mut_subcommand(name, |sub| self.apply_to(sub, None));
            }
            command
        });
        cli = cli.mut_subcommand("config", |config| {
            config.mut_subcommand("show", |mut show| {
                for role in ROLES {
                    show = show.mut_subcommand(role, |command| self.apply_to(command, Some(role)));
                }
                show
            })
        });
        Ok(cli)
    }

    fn apply_to(&self, command: Command, role: Option<&str>) -> Command {
        let values = self.values_for(role, &ids_of(&command));
        let mut command = command;
        for (id, values) in values {
            // `--help` shows a flag's default: never a secret from the file.
            let secret = values.iter().any(|v| shown_value(v, false) != *v);
            command = command.mut_arg(id, |arg| {
                let hide = secret || arg.is_hide_env_values_set();
                arg.default_values(values).hide_default_value(hide)
            });
        }
        command
    }

    /// The file without `redis_url` when the Redis host is given by a
    /// higher source (`REDIS_HOST` in the environment, `--redis-host` on
    /// the command line): a URL wins over the parts only within one
    /// source, so the environment still wins over the file.
    fn without_url_below_parts(mut self, args: &[OsString]) -> Self {
        let host_in_env = std::env::var_os("REDIS_HOST").is_some_and(|v| !v.is_empty());
        let host_flag = args.iter().any(|a| {
            a.to_str()
                .is_some_and(|a| a == "--redis-host" || a.starts_with("--redis-host="))
        });
        if host_in_env || host_flag {
            self.shared.remove("redis_url");
            for table in self.roles.values_mut() {
                table.remove("redis_url");
            }
        }
        self
    }
}

/// Whether `value` is one the flag `arg` takes, and why not: parsed by
/// the flag itself, alone in a command of its own.
fn check_value(arg: &clap::Arg, value: &str) -> std::result::Result<(), String> {
    if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
        return value
            .parse::<bool>()
            .map(drop)
            .map_err(|_| "expected true or false".to_owned());
    }
    let alone = arg
        .clone()
        .env(None::<&str>)
        .default_value(None::<&str>)
        .requires(clap::builder::Resettable::<clap::Id>::Reset);
    let long = arg.get_long().unwrap_or(arg.get_id().as_str());
    Command::new("check")
        .no_binary_name(true)
        .arg(alone)
        .try_get_matches_from([format!("--{long}={value}")])
        .map(drop)
        .map_err(|err| {
            let text = err.to_string();
            let first = text.lines().next().unwrap_or_default();
            first.trim_start_matches("error: ").to_owned()
        })
}

/// A TOML value as the values of a flag: strings as they are, numbers and
/// booleans as written, arrays as several values.
fn flag_values(value: &toml::Value) -> Result<Vec<String>> {
    Ok(match value {
        toml::Value::String(text) => vec![text.clone()],
        toml::Value::Integer(n) => vec![n.to_string()],
        toml::Value::Float(x) => vec![x.to_string()],
        toml::Value::Boolean(b) => vec![b.to_string()],
        toml::Value::Array(items) => items
            .iter()
            .map(|item| match item {
                toml::Value::Array(_) | toml::Value::Table(_) => {
                    bail!("a list holds strings, numbers or booleans")
                }
                item => Ok(flag_values(item)?.remove(0)),
            })
            .collect::<Result<_>>()?,
        toml::Value::Datetime(_) => bail!("write durations as text, such as \"5s\" or \"250ms\""),
        toml::Value::Table(_) => bail!("a table inside a role's table is not a setting"),
    })
}

/// The subcommand `role` of the whole command line.
fn role_command<'a>(cli: &'a Command, role: &str) -> &'a Command {
    cli.find_subcommand(role)
        .unwrap_or_else(|| panic!("holdfast has a {role} command"))
}

/// The ids of a command's settings (without help and version).
fn ids_of(command: &Command) -> BTreeSet<String> {
    command
        .get_arguments()
        .map(|arg| arg.get_id().to_string())
        .filter(|id| !matches!(id.as_str(), "help" | "version" | "config"))
        .collect()
}

/// The file a command line names: `--config FILE` (or `--config=FILE`),
/// else `HOLDFAST_CONFIG`.
pub fn path_in(args: &[OsString], env: Option<OsString>) -> Option<PathBuf> {
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        let Some(text) = arg.to_str() else { continue };
        if text == "--" {
            break;
        }
        if text == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    env.filter(|path| !path.is_empty()).map(PathBuf::from)
}

/// A parsed command line with what `config show` needs to tell where each
/// value came from.
pub struct Invocation {
    /// The whole command line as clap saw it, the file applied.
    pub command: Command,
    /// What was parsed.
    pub matches: ArgMatches,
    /// The configuration file, when one was given.
    pub file: Option<ConfigFile>,
}

/// Parses `args` (the process's arguments) with the configuration file
/// they or the environment name. A mistake on the command line exits as
/// clap does (usage, status 2); one in the file is returned.
pub fn parse(args: Vec<OsString>) -> Result<(Cli, Invocation)> {
    let file = match path_in(&args, std::env::var_os(CONFIG_ENV)) {
        Some(path) => Some(ConfigFile::read(&path)?.without_url_below_parts(&args)),
        None => None,
    };
    let mut command = Cli::command();
    if let Some(file) = &file {
        command = file.apply(command)?;
    }
    let matches = command
        .try_get_matches_from_mut(args)
        .unwrap_or_else(|err| err.exit());
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    Ok((
        cli,
        Invocation {
            command,
            matches,
            file,
        },
    ))
}

impl Invocation {
    /// `holdfast config show [ROLE]`: the settings of one role, or of
    /// every role, each with where its value came from.
    pub fn show(&self, role: Option<&str>) -> Result<String> {
        let shared = shared_ids();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# The configuration holdfast {} start with: each value is followed\n\
             # by where it comes from (default, file, env NAME or flag --name).\n\
             # Secrets show as *** on lines commented out; the rest of this\n\
             # text is a valid --config file.",
            match role {
                Some(role) => format!("{role} would"),
                None => "roles would".to_owned(),
            }
        );
        if let Some(file) = &self.file {
            let _ = writeln!(out, "# Configuration file: {}", file.path().display());
        }
        let roles: Vec<&str> = match role {
            Some(role) => vec![role],
            None => ROLES.to_vec(),
        };
        // A shared setting shows once on the top, and again in a role's
        // table only where that role's value differs (its own table in
        // the file, say).
        let mut shown_shared: BTreeMap<String, String> = BTreeMap::new();
        let mut sections = String::new();
        let mut top = String::new();
        for role in roles {
            let (command, matches) = self.role_matches(role)?;
            let mut section = String::new();
            // In the order the flags are declared (a file's values moved
            // the flags they set to the end).
            let declared: Vec<String> = role_command(&Cli::command(), role)
                .get_arguments()
                .map(|arg| arg.get_id().to_string())
                .collect();
            let mut args: Vec<&clap::Arg> = command.get_arguments().collect();
            args.sort_by_key(|arg| {
                declared
                    .iter()
                    .position(|id| arg.get_id() == id.as_str())
                    .unwrap_or(usize::MAX)
            });
            for arg in args {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version" | "config") {
                    continue;
                }
                let line = self.line(role, arg, &matches);
                if !shared.contains(id) {
                    section.push_str(&line);
                    continue;
                }
                match shown_shared.get(id) {
                    None => {
                        top.push_str(&line);
                        shown_shared.insert(id.to_owned(), line);
                    }
                    Some(first) if *first != line => section.push_str(&line),
                    Some(_) => {}
                }
            }
            let _ = write!(sections, "\n[{role}]\n{section}");
        }
        let _ = write!(out, "\n{top}{sections}");
        Ok(out)
    }

    /// The command and matches of `config show ROLE`: the ones parsed when
    /// that role was given, else the role parsed with no flags (the file
    /// and the environment still apply).
    fn role_matches(&self, role: &str) -> Result<(Command, ArgMatches)> {
        let show = self
            .command
            .find_subcommand("config")
            .and_then(|c| c.find_subcommand("show"))
            .context("holdfast has config show")?;
        let command = role_command(show, role).clone();
        let given = self
            .matches
            .subcommand_matches("config")
            .and_then(|m| m.subcommand_matches("show"))
            .and_then(|m| m.subcommand_matches(role));
        let matches = match given {
            Some(matches) => matches.clone(),
            None => command
                .clone()
                .no_binary_name(true)
                .try_get_matches_from(Vec::<String>::new())?,
        };
        Ok((command, matches))
    }

    /// One `key = value  # source` line.
    fn line(&self, role: &str, arg: &clap::Arg, matches: &ArgMatches) -> String {
        let id = arg.get_id().as_str();
        let source = match matches.value_source(id) {
            None => return format!("# {id}: not set\n"),
            Some(ValueSource::CommandLine) => format!("flag --{}", arg.get_long().unwrap_or(id)),
            Some(ValueSource::EnvVariable) => format!(
                "env {}",
                arg.get_env()
                    .map(OsStr::to_string_lossy)
                    .unwrap_or_default()
            ),
            Some(_) => match &self.file {
                Some(file) if file.sets(role, id) => format!("file {}", file.path().display()),
                _ => "default".to_owned(),
            },
        };
        let values: Vec<String> = matches
            .get_raw(id)
            .map(|raw| raw.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let secret = arg.is_hide_env_values_set();
        let shown: Vec<String> = values
            .iter()
            .map(|value| toml_value(&shown_value(value, secret)))
            .collect();
        // A line whose secret is hidden is commented out: read back as a
        // file, `***` would become the password.
        let hidden = values
            .iter()
            .zip(&shown)
            .any(|(value, shown)| toml_value(value) != *shown);
        let value = if shown.len() == 1 && arg.get_value_delimiter().is_none() {
            shown[0].clone()
        } else {
            format!("[{}]", shown.join(", "))
        };
        let line = if hidden {
            format!("# {id} = {value}")
        } else {
            format!("{id} = {value}")
        };
        format!("{line:<44}  # {source}\n")
    }
}

/// A setting's value as it may be shown: `***` for a secret, a URL
/// without its credentials.
fn shown_value(value: &str, secret: bool) -> String {
    if secret {
        "***".to_owned()
    } else {
        holdfast_core::redact_url(value)
    }
}

/// A value as TOML writes it: integers and booleans bare, the rest quoted.
fn toml_value(text: &str) -> String {
    if text.parse::<i64>().is_ok() || text == "true" || text == "false" {
        text.to_owned()
    } else {
        toml::Value::String(text.to_owned()).to_string()
    }
}

/// `holdfast config sample`: a configuration file that lists every
/// setting of every role with its help, its variable and its default, each
/// commented out so that the file as written changes nothing.
pub fn sample() -> String {
    // The built-in defaults, not this process's environment; built, so
    // that switches show their implicit `false`.
    let mut cli = Cli::command();
    cli.build();
    let shared = shared_ids();
    let mut out = String::from(
        "# holdfast configuration file: every setting with its default.\n\
         #\n\
         # Use it with `holdfast --config FILE ROLE` or HOLDFAST_CONFIG=FILE.\n\
         # Precedence, lowest first: the defaults below, this file, the\n\
         # environment (the variable named beside each setting), flags.\n\
         # Keys on the top apply to every role that has them; a role's table\n\
         # holds its own settings and wins over the top. Uncomment to set.\n\
         # Written by `holdfast config sample`; a test keeps it in step.\n",
    );
    let mut top = String::new();
    let mut written = BTreeSet::new();
    let mut sections = String::new();
    for role in ROLES {
        let command = role_command(&cli, role);
        let mut section = String::new();
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version" | "config") {
                continue;
            }
            let entry = sample_entry(arg);
            if shared.contains(id) {
                if written.insert(id.to_owned()) {
                    top.push_str(&entry);
                }
            } else {
                section.push_str(&entry);
            }
        }
        let _ = write!(sections, "\n[{role}]\n{section}");
    }
    let _ = write!(out, "{top}{sections}");
    out
}

/// One setting of the sample: its help wrapped as comments, then the key
/// with its default, commented out.
fn sample_entry(arg: &clap::Arg) -> String {
    let id = arg.get_id().as_str();
    let mut out = String::from("\n");
    let mut help = arg.get_help().map(ToString::to_string).unwrap_or_default();
    if let Some(env) = arg.get_env() {
        let _ = write!(help, " (env {})", env.to_string_lossy());
    }
    let mut line = String::from("#");
    for word in help.split_whitespace() {
        if line.len() + 1 + word.len() > 76 && line.len() > 1 {
            let _ = writeln!(out, "{line}");
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    let _ = writeln!(out, "{line}");
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| toml_value(&v.to_string_lossy()))
        .collect();
    let value = match defaults.len() {
        0 => format!(
            "\"<{}>\"",
            arg.get_value_names()
                .and_then(|names| names.first())
                .map(ToString::to_string)
                .unwrap_or_else(|| id.to_uppercase())
        ),
        1 if arg.get_value_delimiter().is_none() => defaults[0].clone(),
        _ => format!("[{}]", defaults.join(", ")),
    };
    let _ = writeln!(out, "# {id} = {value}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("holdfast")
            .chain(list.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn file(text: &str) -> ConfigFile {
        ConfigFile::parse(Path::new("holdfast.toml"), text).unwrap()
    }

    fn mistakes(text: &str) -> String {
        match ConfigFile::parse(Path::new("holdfast.toml"), text)
            .and_then(|file| file.apply(Cli::command()))
        {
            Ok(_) => panic!("{text:?} was accepted"),
            Err(err) => format!("{err:#}"),
        }
    }

    /// Parses `list` with `file` applied, as `holdfast` would.
    fn parsed(file: &ConfigFile, list: &[&str]) -> (Cli, ArgMatches, Command) {
        let mut command = file.apply(Cli::command()).unwrap();
        let matches = command.try_get_matches_from_mut(args(list)).unwrap();
        (Cli::from_arg_matches(&matches).unwrap(), matches, command)
    }

    #[test]
    fn the_file_is_named_by_the_flag_or_else_the_environment() {
        let env = Some(OsString::from("/etc/from-env.toml"));
        assert_eq!(
            path_in(&args(&["--config", "a.toml", "worker"]), env.clone()),
            Some(PathBuf::from("a.toml"))
        );
        assert_eq!(
            path_in(&args(&["worker", "--config=b.toml"]), env.clone()),
            Some(PathBuf::from("b.toml"))
        );
        assert_eq!(
            path_in(&args(&["worker"]), env),
            Some(PathBuf::from("/etc/from-env.toml"))
        );
        assert_eq!(
            path_in(&args(&["worker", "--", "--config", "x"]), None),
            None
        );
        assert_eq!(path_in(&args(&["worker"]), Some(OsString::new())), None);
    }

    #[test]
    fn the_file_sits_between_the_defaults_and_the_flags() {
        let file = file(
            "partitions = 4\nkey_prefix = \"shop\"\n\n[worker]\nconcurrency = 32\ndrain-timeout = \"45s\"\n",
        );
        let (cli, ..) = parsed(&file, &["worker", "--concurrency", "8"]);
        let crate::cli::Command::Worker(worker) = cli.command else {
            panic!("not the worker");
        };
        assert_eq!(worker.redis.partitions, 4, "from the top of the file");
        assert_eq!(worker.redis.key_prefix, "shop");
        assert_eq!(worker.drain_timeout, std::time::Duration::from_secs(45));
        assert_eq!(worker.concurrency, 8, "the flag wins over the file");
        // The top applies to every role; a role's table only to its own.
        let (cli, ..) = parsed(&file, &["ingress"]);
        let crate::cli::Command::Ingress(ingress) = cli.command else {
            panic!("not the ingress");
        };
        assert_eq!(ingress.redis.partitions, 4);
        let defaults = crate::cli::IngressArgs::defaults().unwrap();
        assert_eq!(ingress.backlog_limit, defaults.backlog_limit);
    }

    #[test]
    fn a_table_wins_over_the_top_and_lists_take_several_values() {
        let file = file(
            "key_prefix = \"top\"\n[exporter]\nkey_prefix = \"own\"\ntopics = [\"weather\", \"billing\"]\nredis_tls_insecure = true\n",
        );
        let (cli, ..) = parsed(&file, &["exporter"]);
        let crate::cli::Command::Exporter(exporter) = cli.command else {
            panic!("not the exporter");
        };
        assert_eq!(exporter.redis.key_prefix, "own");
        assert_eq!(
            exporter.topics,
            Some(vec!["weather".to_owned(), "billing".to_owned()])
        );
        assert!(exporter.redis.redis_tls_insecure);
    }

    #[test]
    fn mistakes_in_the_file_are_named() {
        let text = mistakes("concurency = 3\n");
        assert!(
            text.contains("concurency: not a setting of any role"),
            "{text}"
        );
        let text = mistakes("[worker]\nlisten = \"0.0.0.0:1\"\n");
        assert!(
            text.contains("[worker] listen: not a setting of the worker"),
            "{text}"
        );
        assert!(
            text.contains("admin_listen"),
            "the worker's settings are listed: {text}"
        );
        let text = mistakes("[workers]\nconcurrency = 3\n");
        assert!(text.contains("unknown table [workers]"), "{text}");
        let text = mistakes("[worker]\nconcurrency = \"many\"\n");
        assert!(text.contains("[worker] concurrency = \"many\""), "{text}");
        let text = mistakes("metrics_flush_interval = \"soon\"\n");
        assert!(text.contains("metrics_flush_interval = \"soon\""), "{text}");
        let text = mistakes("[api]\nnested = { a = 1 }\n");
        assert!(text.contains("[api] nested"), "{text}");
        let err = ConfigFile::parse(Path::new("x.toml"), "partitions = \n").unwrap_err();
        assert!(
            format!("{err:#}").contains("x.toml is not valid TOML"),
            "{err:#}"
        );
    }

    /// What `config show` prints for `list` (a command line) and `file`.
    fn shown(file: Option<ConfigFile>, list: &[&str], role: Option<&str>) -> String {
        let mut command = Cli::command();
        if let Some(file) = &file {
            command = file.apply(command).unwrap();
        }
        let matches = command.try_get_matches_from_mut(args(list)).unwrap();
        Invocation {
            command,
            matches,
            file,
        }
        .show(role)
        .unwrap()
    }

    #[test]
    fn config_show_tells_where_each_value_comes_from() {
        let file = file("[worker]\nconcurrency = 32\nmax_deliveries = 7\n");
        let text = shown(
            Some(file),
            &[
                "config",
                "show",
                "worker",
                "--max-deliveries",
                "9",
                "--redis-url",
                "redis://u:pw-secret@h:1/",
            ],
            Some("worker"),
        );
        let line = |key: &str| {
            text.lines()
                .find(|line| {
                    line.trim_start_matches("# ")
                        .starts_with(&format!("{key} = "))
                })
                .unwrap_or_else(|| panic!("no {key} in {text}"))
                .to_owned()
        };
        assert!(
            line("concurrency").ends_with("# file holdfast.toml"),
            "{text}"
        );
        assert!(line("max_deliveries").contains("= 9"), "{text}");
        assert!(
            line("max_deliveries").ends_with("# flag --max-deliveries"),
            "{text}"
        );
        assert!(line("topic").ends_with("# default"), "{text}");
        assert!(
            line("redis_url").starts_with("# redis_url = \"redis://u:***@h:1/\""),
            "{text}"
        );
        assert!(!text.contains("pw-secret"), "{text}");
        // What it prints is a configuration file that gives the same values.
        let again = ConfigFile::parse(Path::new("shown.toml"), &text).unwrap();
        let (cli, ..) = parsed(&again, &["worker"]);
        let crate::cli::Command::Worker(worker) = cli.command else {
            panic!("not the worker");
        };
        assert_eq!((worker.concurrency, worker.max_deliveries), (32, 9));
    }

    #[test]
    fn secrets_from_the_file_show_neither_in_help_nor_in_its_errors() {
        let file = file(
            "redis_password = \"pw-secret\"\n[api]\ndatabase_url = \"postgres://app:hunter2@db/shop\"\n",
        );
        let mut command = file.apply(Cli::command()).unwrap();
        let help = command
            .find_subcommand_mut("api")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(
            !help.contains("pw-secret") && !help.contains("hunter2"),
            "{help}"
        );
        let text =
            mistakes("[api]\ndatabase_url = \"postgress://app:hunter2@db/shop?password=pw2\"\n");
        assert!(text.contains("[api] database_url"), "{text}");
        assert!(!text.contains("hunter2") && !text.contains("pw2"), "{text}");
    }

    #[test]
    fn the_environment_or_a_flag_naming_the_redis_host_wins_over_the_file_url() {
        let list = ["worker", "--redis-host", "cache.internal"];
        let file =
            file("redis_url = \"redis://file-host:1/\"\n").without_url_below_parts(&args(&list));
        let (cli, ..) = parsed(&file, &list);
        let crate::cli::Command::Worker(worker) = cli.command else {
            panic!("not the worker");
        };
        assert_eq!(worker.redis.url(), "redis://cache.internal:6379/0");
    }

    #[test]
    fn config_show_hides_the_redis_password_of_every_role() {
        for role in ROLES {
            let url = "rediss://app:s3cret-pw@cache.example:6380/0";
            let text = shown(
                None,
                &["config", "show", role, "--redis-url", url],
                Some(role),
            );
            assert!(text.contains("cache.example:6380"), "{text}");
            assert!(
                !text.contains("s3cret"),
                "{role} shows the password: {text}"
            );
        }
    }

    #[test]
    fn config_show_without_a_role_shows_every_role_and_hides_tokens() {
        let text = shown(
            Some(file(
                "[dashboard]\ntoken = \"tok-secret\"\ncontrol_url = \"http://127.0.0.1:1\"\n",
            )),
            &["config", "show"],
            None,
        );
        for role in ROLES {
            assert!(
                text.contains(&format!("\n[{role}]\n")),
                "{role} missing: {text}"
            );
        }
        assert_eq!(
            text.matches("\nredis_url").count() + text.matches("# redis_url").count(),
            1
        );
        assert!(!text.contains("tok-secret"), "{text}");
        assert!(text.contains("token = \"***\""), "{text}");
    }

    #[test]
    fn the_sample_file_is_the_one_config_sample_writes_and_changes_nothing() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/holdfast.example.toml");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        let written = sample();
        if committed != written {
            panic!(
                "{} is out of date: run `cargo run -p holdfast -- config sample > deploy/holdfast.example.toml`",
                path.display()
            );
        }
        let file = ConfigFile::parse(&path, &committed).unwrap();
        assert!(file.shared.is_empty() && file.roles.values().all(BTreeMap::is_empty));
        // Uncommented, every setting with a default reads back as that default.
        let uncommented: String = committed
            .lines()
            .filter_map(|line| {
                if line.starts_with('[') {
                    Some(line.to_owned())
                } else {
                    line.strip_prefix("# ")
                        .filter(|rest| rest.contains(" = ") && !rest.contains("\"<"))
                        .map(str::to_owned)
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let file = ConfigFile::parse(&path, &uncommented).unwrap();
        let mut cli = Cli::command();
        cli.build();
        for role in ROLES {
            let command = role_command(&cli, role).clone();
            let ids = ids_of(&command);
            let with_defaults = command
                .get_arguments()
                .filter(|arg| !arg.get_default_values().is_empty())
                .count();
            assert_eq!(
                file.values_for(Some(role), &ids).len(),
                with_defaults,
                "every setting of the {role} with a default is in the sample"
            );
        }
        let (cli, ..) = parsed(&file, &["worker"]);
        let crate::cli::Command::Worker(worker) = cli.command else {
            panic!("not the worker");
        };
        assert_eq!(worker, crate::cli::WorkerArgs::defaults().unwrap());
    }
}
