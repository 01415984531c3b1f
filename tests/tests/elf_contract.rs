//! The built XDP object holds the programs and maps that `filter_common` names, with the
//! key and value sizes of the `filter_common` types. A map layout that drifted from the
//! contract would corrupt state silently; this catches it at test time. Needs no privileges:
//! it parses the ELF embedded in the daemon.

use aya_obj::Object;
use filter_common::{
    BASELINE_PROGRAM_NAME, BlockEvent, COUNTER_SLOTS, Counter, DEFAULT_MAX_SOURCES, EVENTS_BYTES,
    LimitsConfig, Outcome, PROGRAM_NAME, SourceKey, SourceState, map_names,
};
use floodwall::loader::EBPF_OBJECT;

// Kernel map type numbers (include/uapi/linux/bpf.h).
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
const BPF_MAP_TYPE_LRU_HASH: u32 = 9;
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
    for name in [PROGRAM_NAME, BASELINE_PROGRAM_NAME] {
        assert!(
            obj.programs.contains_key(name),
            "program {name} missing; object has {:?}",
            obj.programs.keys().collect::<Vec<_>>()
        );
    }
}

#[test]
fn maps_match_the_contract() {
    let obj = object();
    // (name, type, key size, value size, max entries)
    let expected = [
        (
            map_names::SOURCES,
            BPF_MAP_TYPE_LRU_HASH,
            size_of_u32::<SourceKey>(),
            size_of_u32::<SourceState>(),
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
            COUNTER_SLOTS,
        ),
        (map_names::EVENTS, BPF_MAP_TYPE_RINGBUF, 0, 0, EVENTS_BYTES),
        (map_names::EVENTS_LOST, BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 1),
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
}

#[test]
fn counter_slots_have_room_for_every_outcome() {
    let slots = usize::try_from(COUNTER_SLOTS).expect("small");
    assert!(
        Outcome::ALL.len() <= slots,
        "{} outcomes do not fit {slots} counter slots",
        Outcome::ALL.len()
    );
    for (index, outcome) in Outcome::ALL.iter().enumerate() {
        assert_eq!(
            *outcome as usize, index,
            "Outcome::ALL must be in index order"
        );
        assert_eq!(Outcome::try_from(*outcome as u32), Ok(*outcome));
    }
    assert!(
        size_of::<BlockEvent>().is_multiple_of(8),
        "ring buffer records are 8-byte aligned"
    );
}
