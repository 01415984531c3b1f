//! The built XDP object holds the programs and maps that `filter_common` names, with the
//! key and value sizes of the `filter_common` types. A map layout that drifted from the
//! contract would corrupt state silently; this catches it at test time. Needs no privileges:
//! it parses the ELF embedded in the daemon.

use aya_obj::Object;
use filter_common::{
    BASELINE_PROGRAM_NAME, BLOCK_CACHE_SLOTS, BlockCacheSlot, CEILING_SLOTS, CLOCK_PROGRAM_NAME,
    COUNTER_ENTRIES, ClassState, ClockSample, Counter, DEFAULT_LIST_CAPACITY, DEFAULT_MAX_PREFIXES,
    DEFAULT_MAX_SOURCES, EVENTS_BYTES, LimitsConfig, ListEntry, PROGRAM_NAME, PrefixKey,
    PrefixState, REFLECTOR_PROGRAM_NAME, SKETCH_ROWS, STAGE_SLOTS, SYN_COOKIE_PROGRAM_NAME,
    SYN_PORT_WORDS, SYN_STAT_SLOTS, SketchRow, SourceKey, TABLE_STAT_SLOTS, TRACKED_CHUNKS,
    TrackedChunk, map_names,
};
use floodwall::loader::EBPF_OBJECT;

// Kernel map type numbers (include/uapi/linux/bpf.h).
const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_PROG_ARRAY: u32 = 3;
const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
const BPF_MAP_TYPE_LRU_HASH: u32 = 9;
const BPF_MAP_TYPE_LPM_TRIE: u32 = 11;
const BPF_MAP_TYPE_RINGBUF: u32 = 27;

fn object() -> Object {
    Object::parse(EBPF_OBJECT).expect("the embedded XDP object must parse as BPF ELF")
}

fn size_of_u32<T>() -> u32 {
    u32::try_from(size_of::<T>()).expect("small type")
}

#[test]
fn object_has_the_floodwall_and_baseline_programs() {
    let obj = object();
    for name in [
        PROGRAM_NAME,
        BASELINE_PROGRAM_NAME,
        CLOCK_PROGRAM_NAME,
        REFLECTOR_PROGRAM_NAME,
        filter_common::CALLS_PROGRAM_NAME,
        SYN_COOKIE_PROGRAM_NAME,
        filter_common::RULES_PROGRAM_NAME,
        filter_common::AFTER_RULES_PROGRAM_NAME,
    ] {
        assert!(
            obj.programs.contains_key(name),
            "program {name} missing; object has {:?}",
            obj.programs.keys().collect::<Vec<_>>()
        );
    }
}

#[test]
#[expect(clippy::too_many_lines, reason = "one table of maps")]
fn maps_match_the_contract() {
    let obj = object();
    // (name, type, key size, value size, max entries)
    let expected = [
        (
            map_names::SOURCES,
            BPF_MAP_TYPE_ARRAY,
            4,
            size_of_u32::<filter_common::SourceSlot>(),
            DEFAULT_MAX_SOURCES,
        ),
        (
            map_names::CLASS_STATE,
            BPF_MAP_TYPE_HASH,
            size_of_u32::<SourceKey>(),
            size_of_u32::<ClassState>(),
            DEFAULT_MAX_SOURCES,
        ),
        (
            map_names::LIMITS,
            BPF_MAP_TYPE_ARRAY,
            4,
            size_of_u32::<LimitsConfig>(),
            1,
        ),
        (
            map_names::COUNTERS,
            BPF_MAP_TYPE_PERCPU_ARRAY,
            4,
            size_of_u32::<Counter>(),
            COUNTER_ENTRIES,
        ),
        (map_names::EVENTS, BPF_MAP_TYPE_RINGBUF, 0, 0, EVENTS_BYTES),
        (map_names::EVENTS_LOST, BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 1),
        (
            map_names::BLOCK_CACHE,
            BPF_MAP_TYPE_ARRAY,
            4,
            size_of_u32::<BlockCacheSlot>(),
            BLOCK_CACHE_SLOTS,
        ),
        (
            map_names::CLOCK,
            BPF_MAP_TYPE_ARRAY,
            4,
            size_of_u32::<ClockSample>(),
            1,
        ),
        // LPM trie keys: a 4-byte prefix length, then the address.
        (
            map_names::ALLOW_V4,
            BPF_MAP_TYPE_LPM_TRIE,
            8,
            size_of_u32::<ListEntry>(),
            DEFAULT_LIST_CAPACITY,
        ),
        (
            map_names::ALLOW_V6,
            BPF_MAP_TYPE_LPM_TRIE,
            20,
            size_of_u32::<ListEntry>(),
            DEFAULT_LIST_CAPACITY,
        ),
        (
            map_names::DENY_V4,
            BPF_MAP_TYPE_LPM_TRIE,
            8,
            size_of_u32::<ListEntry>(),
            DEFAULT_LIST_CAPACITY,
        ),
        (
            map_names::DENY_V6,
            BPF_MAP_TYPE_LPM_TRIE,
            20,
            size_of_u32::<ListEntry>(),
            DEFAULT_LIST_CAPACITY,
        ),
        (
            map_names::SKETCH,
            BPF_MAP_TYPE_PERCPU_ARRAY,
            4,
            size_of_u32::<SketchRow>(),
            SKETCH_ROWS,
        ),
        (
            map_names::CEILINGS,
            BPF_MAP_TYPE_PERCPU_ARRAY,
            4,
            8,
            CEILING_SLOTS,
        ),
        (
            map_names::PREFIXES,
            BPF_MAP_TYPE_LRU_HASH,
            size_of_u32::<PrefixKey>(),
            size_of_u32::<PrefixState>(),
            DEFAULT_MAX_PREFIXES,
        ),
        (
            map_names::TABLE_STATS,
            BPF_MAP_TYPE_PERCPU_ARRAY,
            4,
            8,
            TABLE_STAT_SLOTS,
        ),
        (
            map_names::TRACKED,
            BPF_MAP_TYPE_ARRAY,
            4,
            size_of_u32::<TrackedChunk>(),
            TRACKED_CHUNKS,
        ),
        (
            map_names::SYN_PORTS,
            BPF_MAP_TYPE_ARRAY,
            4,
            8,
            SYN_PORT_WORDS,
        ),
        (
            map_names::SYN_STATS,
            BPF_MAP_TYPE_PERCPU_ARRAY,
            4,
            8,
            SYN_STAT_SLOTS,
        ),
        (
            map_names::STAGES,
            BPF_MAP_TYPE_PROG_ARRAY,
            4,
            4,
            STAGE_SLOTS,
        ),
        (
            map_names::RULES,
            BPF_MAP_TYPE_ARRAY,
            4,
            size_of_u32::<filter_common::RuleEntry>(),
            filter_common::MAX_RULE_ENTRIES,
        ),
        (
            map_names::RULE_BUCKETS,
            BPF_MAP_TYPE_ARRAY,
            4,
            size_of_u32::<filter_common::RuleBucket>(),
            filter_common::RULE_BUCKET_SLOTS,
        ),
        (
            map_names::RULE_BUCKET_AT,
            BPF_MAP_TYPE_ARRAY,
            4,
            4,
            filter_common::RULE_BUCKET_POSITIONS,
        ),
        (
            map_names::RULE_INDEX,
            BPF_MAP_TYPE_ARRAY,
            4,
            8,
            filter_common::RULE_INDEX_WORDS,
        ),
        (
            map_names::RULE_STATS,
            BPF_MAP_TYPE_PERCPU_ARRAY,
            4,
            size_of_u32::<filter_common::RuleCounters>(),
            filter_common::MAX_RULES,
        ),
        (
            map_names::RULE_RATES,
            BPF_MAP_TYPE_ARRAY,
            4,
            size_of_u32::<filter_common::RuleRateState>(),
            filter_common::MAX_RULES,
        ),
        (
            map_names::RULE_SOURCES,
            BPF_MAP_TYPE_LRU_HASH,
            size_of_u32::<filter_common::RuleSourceKey>(),
            size_of_u32::<filter_common::RuleSourceState>(),
            filter_common::MAX_RULE_SOURCES,
        ),
        (
            map_names::RULE_RECORDS,
            BPF_MAP_TYPE_ARRAY,
            4,
            size_of_u32::<filter_common::RuleRecord>(),
            filter_common::MAX_RULES,
        ),
        (
            map_names::KNOWN_SOURCES,
            BPF_MAP_TYPE_HASH,
            size_of_u32::<filter_common::KnownSourceKey>(),
            1,
            filter_common::MAX_KNOWN_SOURCES,
        ),
    ];
    for (name, map_type, key, value, entries) in expected {
        let map = obj.maps.get(name).unwrap_or_else(|| {
            panic!(
                "map {name} missing; object has {:?}",
                obj.maps.keys().collect::<Vec<_>>()
            )
        });
        assert_eq!(map.map_type(), map_type, "map {name}: type");
        assert_eq!(map.key_size(), key, "map {name}: key size");
        assert_eq!(map.value_size(), value, "map {name}: value size");
        assert_eq!(map.max_entries(), entries, "map {name}: max entries");
    }
    // Not preallocated: a configuration without class limits pays no memory for it.
    let class_state = &obj.maps[map_names::CLASS_STATE];
    assert_eq!(
        class_state.map_flags() & 1,
        1,
        "FW_CLASS_STATE must be created with BPF_F_NO_PREALLOC"
    );
}
