//! `quipu schema register|list|check|compatibility`: the schema registry
//! (JSON Schemas per event type).

use std::path::PathBuf;

use anyhow::Context;
use quipu_client::{Client, SchemaVersion};
use serde_json::json;

use super::output::{Output, line};

/// A `quipu schema` command.
#[derive(clap::Subcommand, Debug)]
pub enum SchemaCommand {
    /// Register a JSON Schema for an event type (checked for
    /// compatibility with its earlier versions).
    Register(SchemaArgs),
    /// Say whether a schema could be registered, and what it breaks.
    Check(SchemaArgs),
    /// Every version of every event type, or of one.
    List {
        /// Only this event type.
        subject: Option<String>,
        /// Print the schemas too.
        #[arg(long)]
        schemas: bool,
    },
    /// Show, or turn on or off, validation of appended events against
    /// their type's latest schema, for an event type or a category.
    Validation {
        /// Validate events of this type.
        #[arg(long = "type", conflicts_with = "category")]
        event_type: Option<String>,
        /// Validate every event of this category's streams.
        #[arg(long)]
        category: Option<String>,
        /// Turn it off instead of on.
        #[arg(long)]
        off: bool,
    },
    /// Show or set the compatibility mode of an event type, or the global
    /// one (`--global`).
    Compatibility {
        /// The event type.
        #[arg(required_unless_present = "global", conflicts_with = "global")]
        subject: Option<String>,
        /// The global mode.
        #[arg(long)]
        global: bool,
        /// Set it: NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD,
        /// FORWARD_TRANSITIVE, FULL or FULL_TRANSITIVE.
        #[arg(long)]
        set: Option<String>,
    },
}

/// A `quipu upcaster` command.
#[derive(clap::Subcommand, Debug)]
pub enum UpcasterCommand {
    /// Declare how an event type's data goes from one version to the next.
    Declare {
        /// The event type.
        event_type: String,
        /// The version it reads; it writes the next one.
        #[arg(long = "from")]
        from_version: u32,
        /// The steps, a JSON array, e.g. `[{"rename": {"path": "name", "to":
        /// "full_name"}}, {"add": {"path": "tier", "value": "basic"}}]`.
        #[arg(long)]
        steps: String,
    },
    /// The set's version and every declaration.
    List,
}

/// Runs an upcaster command.
///
/// # Errors
/// The server refused it or cannot be reached; `--steps` is not JSON.
pub async fn run_upcaster(client: &Client, output: &Output, command: UpcasterCommand) -> anyhow::Result<()> {
    let (set_version, declared) = match command {
        UpcasterCommand::Declare { event_type, from_version, steps } => {
            let steps: serde_json::Value = serde_json::from_str(&steps).context("--steps is not JSON")?;
            client.declare_upcaster(&quipu_client::Upcaster { event_type, from_version, steps }).await?
        }
        UpcasterCommand::List => client.list_upcasters().await?,
    };
    if output.is_json() {
        let declared: Vec<serde_json::Value> = declared
            .iter()
            .map(|u| json!({"event_type": u.event_type, "from_version": u.from_version, "steps": u.steps}))
            .collect();
        return line(&json!({"set_version": set_version, "upcasters": declared}));
    }
    println!("upcaster set version {set_version}");
    for u in &declared {
        println!("{:<32} v{} -> v{}  {}", u.event_type, u.from_version, u.from_version + 1, u.steps);
    }
    Ok(())
}

/// A schema for an event type.
#[derive(clap::Args, Debug)]
pub struct SchemaArgs {
    /// The event type (the subject).
    pub subject: String,
    /// The schema as JSON text.
    #[arg(long, required_unless_present = "file", conflicts_with = "file")]
    pub schema: Option<String>,
    /// A file holding the schema (`-` for standard input).
    #[arg(long)]
    pub file: Option<PathBuf>,
}

impl SchemaArgs {
    fn schema(&self) -> anyhow::Result<String> {
        match (&self.schema, &self.file) {
            (Some(schema), _) => Ok(schema.clone()),
            (None, Some(path)) if path.as_os_str() == "-" => {
                std::io::read_to_string(std::io::stdin()).context("reading the schema from standard input")
            }
            (None, Some(path)) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display())),
            (None, None) => anyhow::bail!("give --schema or --file"),
        }
    }
}

fn print_version(output: &Output, version: &SchemaVersion, with_schema: bool) -> anyhow::Result<()> {
    if output.is_json() {
        return line(
            &json!({"subject": version.subject, "version": version.version, "id": version.id, "schema": version.schema}),
        );
    }
    println!("{:<32} version {:>4}  id {:>6}", version.subject, version.version, version.id);
    if with_schema {
        println!("  {}", version.schema);
    }
    Ok(())
}

/// Runs a schema command.
///
/// # Errors
/// The server refused it (an incompatible schema names every break) or
/// cannot be reached; a schema file that cannot be read.
pub async fn run(client: &Client, output: &Output, command: SchemaCommand) -> anyhow::Result<()> {
    match command {
        SchemaCommand::Register(args) => {
            let version = client.register_schema(&args.subject, &args.schema()?).await?;
            print_version(output, &version, false)
        }
        SchemaCommand::Check(args) => {
            let breaks = client.check_schema(&args.subject, &args.schema()?).await?;
            if output.is_json() {
                line(&json!({"compatible": breaks.is_empty(), "breaks": breaks}))?;
            } else if breaks.is_empty() {
                println!("compatible: {} could register it", args.subject);
            } else {
                for reason in &breaks {
                    println!("breaks: {reason}");
                }
            }
            anyhow::ensure!(breaks.is_empty(), "the schema is incompatible ({} breaks)", breaks.len());
            Ok(())
        }
        SchemaCommand::List { subject, schemas } => {
            let versions = client.list_schemas().await?;
            let shown: Vec<&SchemaVersion> =
                versions.iter().filter(|v| subject.as_ref().is_none_or(|s| &v.subject == s)).collect();
            if shown.is_empty() && !output.is_json() {
                println!("(no schemas)");
            }
            shown.into_iter().try_for_each(|v| print_version(output, v, schemas))
        }
        SchemaCommand::Validation { event_type, category, off } => {
            let (types, categories) = match (event_type, category) {
                (Some(t), _) => client.set_validation(&t, false, !off).await?,
                (None, Some(c)) => client.set_validation(&c, true, !off).await?,
                (None, None) => client.validation().await?,
            };
            if output.is_json() {
                return line(&json!({"event_types": types, "categories": categories}));
            }
            println!("validated event types: {}", if types.is_empty() { "-".into() } else { types.join(", ") });
            println!(
                "validated categories:  {}",
                if categories.is_empty() { "-".into() } else { categories.join(", ") }
            );
            Ok(())
        }
        SchemaCommand::Compatibility { subject, set, .. } => {
            let mode = match &set {
                Some(mode) => client.set_compatibility(subject.as_deref(), mode).await?,
                None => client.compatibility(subject.as_deref()).await?,
            };
            if output.is_json() {
                return line(&json!({"subject": subject, "compatibility": mode}));
            }
            println!("{}: {mode}", subject.as_deref().unwrap_or("global"));
            Ok(())
        }
    }
}
