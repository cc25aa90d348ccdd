//! `weir registry serve`: a schema registry speaking Confluent Schema Registry's REST API (AVRO schemas).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use weir_connectors::kafka::KafkaOptions;
use weir_connectors::registry::{
    JsonFileStorage, KafkaStorage, MemoryStorage, Registry, RegistryServer, RegistryStorage,
};

/// The `weir registry` commands.
#[derive(Subcommand, Debug)]
pub enum RegistryCommand {
    /// Serve Confluent Schema Registry's REST API (AVRO schemas) over HTTP.
    Serve(ServeArgs),
}

/// Flags of `weir registry serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the address bound is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: String,
    /// JSON file keeping the registry across restarts (replaced atomically on every change). Without it,
    /// the registry lives only as long as the process.
    #[arg(long, conflicts_with = "kafka_brokers")]
    pub storage: Option<PathBuf>,
    /// Keep the registry in a compacted Kafka topic in Confluent's `_schemas` layout, on these brokers
    /// (`host:port[,host:port]`); it is replayed at start.
    #[arg(long)]
    pub kafka_brokers: Option<String>,
    /// The topic of `--kafka-brokers` (created with one partition, compacted, if missing).
    #[arg(long, default_value = "_schemas", requires = "kafka_brokers")]
    pub topic: String,
}

/// Runs a `weir registry` command.
pub fn run(command: RegistryCommand) -> Result<()> {
    match command {
        RegistryCommand::Serve(args) => serve(args),
    }
}

fn serve(args: ServeArgs) -> Result<()> {
    let storage: Box<dyn RegistryStorage> = match (&args.storage, &args.kafka_brokers) {
        (Some(path), _) => Box::new(JsonFileStorage::new(path)),
        (None, Some(brokers)) => Box::new(
            KafkaStorage::connect(&KafkaOptions::new(brokers), &args.topic, std::time::Duration::from_secs(30))
                .with_context(|| format!("cannot use Kafka topic {} on {brokers}", args.topic))?,
        ),
        (None, None) => Box::new(MemoryStorage),
    };
    let registry = Registry::open(storage).context("cannot open the registry storage")?;
    let server = RegistryServer::bind(&args.listen, registry)?;
    let addr = server.local_addr().map_or_else(|| args.listen.clone(), |a| a.to_string());
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on http://{addr}")?;
    stdout.flush()?;
    server.run();
    Ok(())
}
