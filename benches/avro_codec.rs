//! Codec throughput: Confluent-framed Avro encode and decode (typed, generic, with schema evolution) against an
//! in-process `weir registry` server, and JSON decode for comparison; 1 and 2 threads, each decoding its share
//! with its own clone of the decoder (as timely workers would).

mod common;

use std::time::Duration;

use apache_avro::AvroSchema;
use serde::{Deserialize, Serialize};
use weir_connectors::codec::avro::{AvroDecoder, AvroEncoder, AvroEncoderConfig, GenericAvroDecoder};
use weir_connectors::codec::json::{JsonDecoder, JsonEncoder};
use weir_connectors::codec::{Decode, Encode};
use weir_connectors::registry::{MemoryStorage, Registry, RegistryClient, RegistryServer};

/// A Nexmark-like bid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[serde(rename = "Bid")]
#[avro(namespace = "weir.bench")]
struct Bid {
    auction: i64,
    bidder: i64,
    price: i64,
    channel: String,
    url: String,
    date_time: i64,
}

/// The next version: one optional field more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[serde(rename = "Bid")]
#[avro(namespace = "weir.bench")]
struct BidV2 {
    auction: i64,
    bidder: i64,
    price: i64,
    channel: String,
    url: String,
    date_time: i64,
    #[avro(default = "null")]
    extra: Option<String>,
}

fn bid(i: u64) -> Bid {
    Bid {
        auction: (i % 1000) as i64,
        bidder: (i % 7919) as i64,
        price: (i * 37 % 100_000) as i64,
        channel: ["Google", "Facebook", "Baidu", "Apple"][(i % 4) as usize].to_string(),
        url: format!("https://www.nexmark.com/item.htm?query=1&channel_id={}", i % 1000),
        date_time: 1_700_000_000_000 + i as i64,
    }
}

/// Runs `decode` over `payloads` on `workers` threads (each its contiguous share); returns the records decoded.
fn decode_on<D: Decode + Clone + Send + Sync>(decoder: &D, payloads: &[Vec<u8>], workers: usize) -> usize {
    let share = payloads.len().div_ceil(workers);
    std::thread::scope(|scope| {
        let handles: Vec<_> = payloads
            .chunks(share)
            .map(|chunk| {
                let decoder = decoder.clone();
                scope.spawn(move || chunk.iter().filter(|p| decoder.decode(p).is_ok()).count())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

fn main() {
    if common::listing("avro_codec") {
        return;
    }
    let rows = common::rows(200_000);
    println!("avro_codec: {} rows={rows}", common::machine());

    let server = RegistryServer::bind("127.0.0.1:0", Registry::open(Box::new(MemoryStorage)).unwrap()).unwrap();
    let url = format!("http://{}", server.local_addr().unwrap());
    std::thread::spawn(move || server.run());
    let client = RegistryClient::from_url(&url).unwrap();
    let config = AvroEncoderConfig::default().auto_register(true);
    let encoder = AvroEncoder::<Bid>::new(client.clone(), "bids", config).unwrap();
    AvroEncoder::<BidV2>::new(client.clone(), "bids", config).unwrap();

    let bids: Vec<Bid> = (0..rows).map(bid).collect();
    let (elapsed, avro) = common::best_of_three(|| bids.iter().map(|b| encoder.encode(b).unwrap()).collect::<Vec<_>>());
    common::report("encode typed (Confluent Avro)", rows, 1, elapsed);
    let json: Vec<Vec<u8>> = bids.iter().map(|b| JsonEncoder.encode(b).unwrap()).collect();
    println!(
        "  bytes per record: Avro {:.1} (incl. 5-byte header), JSON {:.1}",
        avro.iter().map(Vec::len).sum::<usize>() as f64 / rows as f64,
        json.iter().map(Vec::len).sum::<usize>() as f64 / rows as f64
    );

    let typed = AvroDecoder::<Bid>::new(client.clone());
    let evolved = AvroDecoder::<BidV2>::new(client.clone());
    let generic = GenericAvroDecoder::new(client.clone());
    let json_decoder = JsonDecoder::<Bid>::new();
    for workers in [1, 2] {
        let run = |label: &str, count: &dyn Fn() -> usize| {
            let (elapsed, decoded): (Duration, usize) = common::best_of_three(count);
            assert_eq!(decoded as u64, rows, "{label}: every record decodes");
            common::report(label, rows, workers, elapsed);
        };
        run("decode typed (Confluent Avro)", &|| decode_on(&typed, &avro, workers));
        run("decode typed v1 -> v2 reader (resolution)", &|| decode_on(&evolved, &avro, workers));
        run("decode generic Value (Confluent Avro)", &|| decode_on(&generic, &avro, workers));
        run("decode typed JSON (serde_json)", &|| decode_on(&json_decoder, &json, workers));
    }
}
