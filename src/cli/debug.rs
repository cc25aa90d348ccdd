//! `weir debug decode`: shows one Kafka record as hex, then as UTF-8, then decoded (Avro through
//! the schema registry when it starts with Confluent's magic byte, JSON otherwise), with its
//! schema id: the first thing to look at when a source says a record does not decode.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use weir_connectors::codec::avro::GenericAvroDecoder;
use weir_connectors::codec::json::JsonDecoder;
use weir_connectors::codec::Decode;
use weir_connectors::kafka::KafkaOptions;
use weir_connectors::registry::client::RegistryClient;

use super::kafka::with_settings;

/// The `weir debug` commands.
#[derive(Subcommand, Debug)]
pub enum DebugCommand {
    /// Show one Kafka record: hex, UTF-8, and the decoded value with its schema id.
    Decode(DecodeArgs),
}

/// Flags of `weir debug decode`.
#[derive(Args, Debug)]
pub struct DecodeArgs {
    /// Kafka bootstrap servers, host:port[,host:port].
    #[arg(long)]
    pub brokers: String,
    /// The topic.
    #[arg(long)]
    pub topic: String,
    /// The partition.
    #[arg(long, default_value_t = 0)]
    pub partition: i32,
    /// The record's offset.
    #[arg(long)]
    pub offset: i64,
    /// Schema registry URL, to decode Avro in Confluent's wire format.
    #[arg(long)]
    pub registry: Option<String>,
    /// Show the key instead of the value.
    #[arg(long)]
    pub key: bool,
    /// A librdkafka consumer setting, key=value (repeatable).
    #[arg(long = "kafka", value_name = "KEY=VALUE")]
    pub kafka: Vec<String>,
}

/// Runs a `weir debug` command.
pub fn run(command: DebugCommand) -> Result<()> {
    match command {
        DebugCommand::Decode(args) => decode(args),
    }
}

fn decode(args: DecodeArgs) -> Result<()> {
    let options = with_settings(KafkaOptions::new(&args.brokers), &args.kafka)?;
    let consumer: BaseConsumer = options
        .client_config(&[
            ("group.id", "weir-debug-decode"),
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", "error"),
        ])
        .create()
        .context("cannot create the Kafka consumer")?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(&args.topic, args.partition, Offset::Offset(args.offset))?;
    consumer.assign(&assignment).context("cannot assign the partition")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let message = loop {
        if Instant::now() > deadline {
            bail!(
                "no record at {}-{} offset {} within 30 s: check the topic, partition and offset (and that the brokers at {} answer)",
                args.topic,
                args.partition,
                args.offset,
                args.brokers
            );
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => break message,
            Some(Err(error)) => bail!("cannot read {}-{} offset {}: {error}", args.topic, args.partition, args.offset),
            None => continue,
        }
    };
    let bytes = if args.key { message.key() } else { message.payload() }.unwrap_or_default().to_vec();
    let what = if args.key { "key" } else { "value" };
    println!(
        "{}-{} offset {} timestamp {:?}: {what} of {} bytes",
        args.topic,
        args.partition,
        message.offset(),
        message.timestamp().to_millis(),
        bytes.len()
    );
    println!("\nhex:");
    print!("{}", hex_dump(&bytes));
    println!("\nUTF-8:");
    match std::str::from_utf8(&bytes) {
        Ok(text) => println!("{text}"),
        Err(error) => println!("(not valid UTF-8: {error}) {}", String::from_utf8_lossy(&bytes)),
    }
    println!("\ndecoded:");
    if bytes.first() == Some(&0) {
        let Some(url) = &args.registry else {
            println!("starts with Confluent's magic byte 0x00: give --registry URL to decode it as Avro");
            return Ok(());
        };
        let client = RegistryClient::from_url(url).with_context(|| format!("bad registry URL {url}"))?;
        match GenericAvroDecoder::new(client).decode(&bytes) {
            Ok(decoded) => {
                let json: serde_json::Value = apache_avro::from_value(&decoded.value)
                    .unwrap_or_else(|_| serde_json::Value::String(format!("{:?}", decoded.value)));
                println!("Avro, schema id {}: {json}", decoded.schema_id);
            }
            Err(error) => println!("error: {error}"),
        }
    } else {
        match JsonDecoder::<serde_json::Value>::new().decode(&bytes) {
            Ok(value) => println!("JSON: {value}"),
            Err(error) => println!("error: {error}"),
        }
    }
    Ok(())
}

/// Sixteen bytes a line: offset, hex, and the printable ASCII.
fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (line, chunk) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String =
            chunk.iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' }).collect();
        out.push_str(&format!("{:08x}  {:<47}  |{ascii}|\n", line * 16, hex.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_dump_shows_offsets_hex_and_ascii() {
        let dump = super::hex_dump(b"\x00\x00\x00\x00\x01{\"a\":1}");
        assert_eq!(dump, "00000000  00 00 00 00 01 7b 22 61 22 3a 31 7d              |.....{\"a\":1}|\n");
    }
}
