//! Identifiers clients send back to us: sequence numbers, shard iterators and shard ids. Any text
//! must parse or be refused without a panic, and whatever parses must print back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_core::SequenceNumber;
use sluice_core::shard_id::{format_shard_id, parse_shard_id};
use sluice_core::shard_iterator::ShardIterator;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(sequence_number) = SequenceNumber::parse(text) {
        let printed = sequence_number.to_string();
        assert_eq!(SequenceNumber::parse(&printed), Ok(sequence_number));
        assert_eq!(printed.trim_start_matches('0'), text.trim_start_matches('0'));
    }
    if let Some(iterator) = ShardIterator::decode(text) {
        assert_eq!(ShardIterator::decode(&iterator.encode()), Some(iterator));
    }
    if let Some(index) = parse_shard_id(text) {
        assert_eq!(parse_shard_id(&format_shard_id(index)), Some(index));
    }
});
