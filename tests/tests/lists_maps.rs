//! `floodwall::lists::ListMaps` against the real LPM tries of the loaded object: every
//! change is all or nothing, counters survive a re-add, expiry deletes only what is due.
//! A second handle on the same kernel map (opened by id) reads and writes entries behind
//! `ListMaps`, as the XDP program does when it counts hits.

use aya::{
    Ebpf,
    maps::{LpmTrie, Map, MapData, lpm_trie::Key},
};
use filter_common::{ListEntry, map_names};
use floodwall::{
    lists::{ListError, ListKind, ListMaps, ListPresence, PerFamily, Prefix, parse_list},
    loader::{self, LoadOptions, Loaded},
};
use floodwall_tests::privileged;

const SEC: u64 = 1_000_000_000;

fn p(text: &str) -> Prefix {
    text.parse()
        .unwrap_or_else(|e| panic!("{text} must parse: {e}"))
}

fn ps(texts: &[&str]) -> Vec<Prefix> {
    texts.iter().map(|t| p(t)).collect()
}

/// A second handle on one of the object's tries, opened by map id before `ListMaps` takes
/// the map, so the test can play the program's part.
fn probe<K: aya::Pod>(ebpf: &Ebpf, name: &str) -> LpmTrie<MapData, K, ListEntry> {
    let Some(Map::LpmTrie(data)) = ebpf.map(name) else {
        panic!("the object must have an LPM trie named {name}");
    };
    let id = data.info().expect("map info").id();
    let data = MapData::from_id(id).expect("open the map by id");
    LpmTrie::try_from(Map::LpmTrie(data)).expect("an LPM trie of ListEntry")
}

struct Setup {
    /// Keeps the program and its maps loaded.
    _loaded: Loaded,
    lists: ListMaps,
    deny_v4: LpmTrie<MapData, [u8; 4], ListEntry>,
    allow_v4: LpmTrie<MapData, [u8; 4], ListEntry>,
}

fn setup() -> Setup {
    let mut loaded = loader::load(&LoadOptions {
        max_sources: 4096,
        test_clock: true,
        without_rules: true,
        ..LoadOptions::default()
    })
    .expect("the XDP program must load with the test clock");
    let deny_v4 = probe(&loaded.ebpf, map_names::DENY_V4);
    let allow_v4 = probe(&loaded.ebpf, map_names::ALLOW_V4);
    let lists = ListMaps::take(&mut loaded.ebpf).expect("the object must have the four tries");
    Setup {
        _loaded: loaded,
        lists,
        deny_v4,
        allow_v4,
    }
}

fn v4_key(prefix: &str) -> Key<[u8; 4]> {
    match p(prefix).lpm_key() {
        floodwall::lists::LpmKey::V4(key) => key,
        floodwall::lists::LpmKey::V6(_) => panic!("{prefix} is not IPv4"),
    }
}

fn listed(lists: &ListMaps, kind: ListKind, now_ns: u64) -> Vec<String> {
    lists
        .list(kind, now_ns)
        .expect("list")
        .iter()
        .map(|v| v.prefix.to_string())
        .collect()
}

#[test]
fn add_list_remove_round_trip() {
    if !privileged("add_list_remove_round_trip") {
        return;
    }
    let s = setup();
    assert_eq!(
        s.lists.nonempty().expect("presence"),
        ListPresence::default()
    );
    let capacity = s.lists.capacity(ListKind::Allow).expect("capacity");
    assert!(
        capacity.v4 >= 100_000 && capacity.v6 >= 100_000,
        "each trie holds at least 100,000 prefixes by default, got {capacity:?}"
    );

    let report = s
        .lists
        .add(
            ListKind::Allow,
            &ps(&["2001:2::/48", "198.18.0.0/24", "198.18.0.7"]),
            None,
        )
        .expect("add to the allowlist");
    assert_eq!(report.added, 3);
    let views = s.lists.list(ListKind::Allow, SEC).expect("list");
    assert_eq!(
        views
            .iter()
            .map(|v| v.prefix.to_string())
            .collect::<Vec<_>>(),
        ["198.18.0.0/24", "198.18.0.7/32", "2001:2::/48"],
        "listed sorted by prefix"
    );
    for view in &views {
        assert_eq!(
            (view.hit_packets, view.hit_bytes, view.expires_in_ms),
            (0, 0, None),
            "a new allowlist entry has no hits and does not expire"
        );
    }
    assert_eq!(
        s.allow_v4
            .get(&v4_key("198.18.0.0/24"), 0)
            .expect("in the kernel"),
        ListEntry::default(),
        "the kernel holds the entry under its key"
    );
    assert_eq!(
        s.lists.nonempty().expect("presence"),
        ListPresence {
            allow: PerFamily { v4: true, v6: true },
            deny: PerFamily {
                v4: false,
                v6: false
            },
        }
    );
    assert!(
        listed(&s.lists, ListKind::Deny, SEC).is_empty(),
        "the denylist is apart"
    );

    let removed = s
        .lists
        .remove(
            ListKind::Allow,
            &ps(&["198.18.0.0/24", "198.18.0.7/32", "2001:2::/48"]),
        )
        .expect("remove");
    assert_eq!(removed, 3);
    assert!(listed(&s.lists, ListKind::Allow, SEC).is_empty());
    assert!(
        s.allow_v4.get(&v4_key("198.18.0.0/24"), 0).is_err(),
        "the kernel no longer holds it"
    );
    assert_eq!(
        s.lists.nonempty().expect("presence"),
        ListPresence::default()
    );
}

#[test]
fn over_capacity_changes_nothing() {
    if !privileged("over_capacity_changes_nothing") {
        return;
    }
    let s = setup();
    let capacity = s.lists.capacity(ListKind::Deny).expect("capacity").v4;
    assert!(capacity < 1 << 24, "the test's hosts fit in 10.0.0.0/8");
    let hosts: Vec<Prefix> = (0..=capacity)
        .map(|i| {
            // 10.0.0.0/8 holds 2^24 hosts, far more than the default capacity.
            let [_, b, c, d] = i.to_be_bytes();
            p(&format!("10.{b}.{c}.{d}"))
        })
        .collect();
    let capacity_usize = usize::try_from(capacity).expect("fits");

    let error = s
        .lists
        .add(ListKind::Deny, &hosts, None)
        .expect_err("one more than the capacity");
    assert!(
        matches!(error, ListError::OverCapacity { .. }),
        "expected OverCapacity, got {error}"
    );
    assert_eq!(
        s.lists.len(ListKind::Deny).expect("len"),
        0,
        "nothing added"
    );
    assert!(listed(&s.lists, ListKind::Deny, SEC).is_empty());

    s.lists
        .add(ListKind::Deny, &hosts[..capacity_usize], None)
        .expect("exactly the capacity fits");
    let error = s
        .lists
        .add(ListKind::Deny, &hosts[capacity_usize..], None)
        .expect_err("the trie is full");
    assert!(
        error.to_string().contains(&format!(
            "the IPv4 denylist would hold {} prefixes, over its capacity of {capacity}",
            capacity + 1
        )),
        "{error}"
    );
    assert_eq!(
        s.lists.list(ListKind::Deny, SEC).expect("list").len(),
        capacity_usize,
        "the full trie is unchanged"
    );
    s.lists
        .add(ListKind::Deny, &ps(&["2001:2::/48"]), None)
        .expect("the IPv6 trie has its own capacity");
}

#[test]
fn a_bulk_add_with_one_bad_prefix_changes_nothing() {
    if !privileged("a_bulk_add_with_one_bad_prefix_changes_nothing") {
        return;
    }
    let s = setup();
    s.lists
        .add(ListKind::Deny, &ps(&["198.18.5.0/24"]), None)
        .expect("add");
    let file = "198.18.0.0/24\n198.18.1.0/24\n198.18.2.1/24  # host bits\n2001:2::/48\n";
    let error = parse_list(file, "bulk.txt").expect_err("line 3 is bad");
    assert!(
        error
            .to_string()
            .starts_with("bulk.txt:3: 198.18.2.1/24 has host bits set"),
        "{error}"
    );
    // The valid part of a file never reaches the maps; and a load refused as a whole
    // (an expiry on the allowlist here) writes none of its prefixes either.
    let good = parse_list("198.18.0.0/24\n198.18.1.0/24\n", "good.txt").expect("valid");
    let error = s
        .lists
        .load(ListKind::Allow, &good, Some(100 * SEC))
        .expect_err("allowlist entries do not expire");
    assert!(matches!(error, ListError::ExpiryOnAllowlist), "{error}");
    assert!(listed(&s.lists, ListKind::Allow, SEC).is_empty());
    assert_eq!(
        listed(&s.lists, ListKind::Deny, SEC),
        ["198.18.5.0/24"],
        "the denylist is as before"
    );
    let report = s.lists.load(ListKind::Deny, &good, None).expect("load");
    assert_eq!(report.added, 2);
    assert_eq!(
        listed(&s.lists, ListKind::Deny, SEC),
        ["198.18.0.0/24", "198.18.1.0/24", "198.18.5.0/24"],
        "a load adds to the list"
    );
}

#[test]
fn removing_a_missing_prefix_changes_nothing() {
    if !privileged("removing_a_missing_prefix_changes_nothing") {
        return;
    }
    let s = setup();
    s.lists
        .add(
            ListKind::Deny,
            &ps(&["198.18.0.0/16", "198.18.0.0/24"]),
            None,
        )
        .expect("add");
    // 198.18.0.0/25 is covered by both, but not listed: a trie lookup would match it.
    let error = s
        .lists
        .remove(ListKind::Deny, &ps(&["198.18.0.0/24", "198.18.0.0/25"]))
        .expect_err("/25 is not listed");
    assert_eq!(
        error.to_string(),
        "not in the denylist: 198.18.0.0/25; nothing was removed"
    );
    assert_eq!(
        listed(&s.lists, ListKind::Deny, SEC),
        ["198.18.0.0/16", "198.18.0.0/24"],
        "nothing removed"
    );
    s.lists
        .remove(ListKind::Deny, &ps(&["198.18.0.0/24"]))
        .expect("remove the /24 only");
    assert_eq!(
        listed(&s.lists, ListKind::Deny, SEC),
        ["198.18.0.0/16"],
        "the covering /16 stays"
    );
}

#[test]
fn re_adding_keeps_counters_and_updates_the_expiry() {
    if !privileged("re_adding_keeps_counters_and_updates_the_expiry") {
        return;
    }
    let mut s = setup();
    s.lists
        .add(ListKind::Deny, &ps(&["198.18.0.0/16"]), None)
        .expect("add /16");
    s.lists
        .add(ListKind::Deny, &ps(&["198.18.0.0/24"]), Some(100 * SEC))
        .expect("add /24");
    // The program counts hits.
    let hits = |packets| ListEntry {
        hit_packets: packets,
        hit_bytes: packets * 100,
        expires_ns: 100 * SEC,
    };
    s.deny_v4
        .insert(&v4_key("198.18.0.0/24"), hits(5), 0)
        .expect("count hits");
    s.deny_v4
        .insert(
            &v4_key("198.18.0.0/16"),
            ListEntry {
                hit_packets: 9,
                hit_bytes: 900,
                expires_ns: 0,
            },
            0,
        )
        .expect("count hits");

    let report = s
        .lists
        .add(ListKind::Deny, &ps(&["198.18.0.0/24"]), Some(300 * SEC))
        .expect("re-add with a later expiry");
    assert_eq!((report.added, report.updated), (0, 1));
    assert_eq!(
        s.deny_v4.get(&v4_key("198.18.0.0/24"), 0).expect("entry"),
        ListEntry {
            expires_ns: 300 * SEC,
            ..hits(5)
        },
        "the re-added entry keeps its own counters and takes the new expiry"
    );
    let views = s.lists.list(ListKind::Deny, 100 * SEC).expect("list");
    assert_eq!(views.len(), 2);
    assert_eq!(
        (
            views[0].prefix,
            views[0].hit_packets,
            views[0].expires_in_ms
        ),
        (p("198.18.0.0/16"), 9, None)
    );
    assert_eq!(
        (
            views[1].prefix,
            views[1].hit_packets,
            views[1].hit_bytes,
            views[1].expires_in_ms
        ),
        (p("198.18.0.0/24"), 5, 500, Some(200_000)),
        "listed with its hits and 200 s to go"
    );
    assert_eq!(s.lists.next_expiry().expect("next expiry"), Some(300 * SEC));
}

#[test]
fn expire_deletes_only_expired_deny_entries() {
    if !privileged("expire_deletes_only_expired_deny_entries") {
        return;
    }
    let s = setup();
    s.lists
        .add(ListKind::Deny, &ps(&["198.18.0.0/24"]), Some(100 * SEC))
        .expect("add");
    s.lists
        .add(ListKind::Deny, &ps(&["2001:2::/48"]), Some(200 * SEC))
        .expect("add");
    s.lists
        .add(ListKind::Deny, &ps(&["198.18.1.0/24"]), None)
        .expect("add");
    s.lists
        .add(ListKind::Allow, &ps(&["198.18.2.0/24"]), None)
        .expect("add");

    assert!(
        s.lists.expire(99 * SEC).expect("expire").is_empty(),
        "nothing is due yet"
    );
    assert_eq!(
        s.lists.expire(150 * SEC).expect("expire"),
        [p("198.18.0.0/24")]
    );
    assert!(
        s.deny_v4.get(&v4_key("198.18.0.0/24"), 0).is_err(),
        "the expired entry is gone from the kernel"
    );
    assert_eq!(
        listed(&s.lists, ListKind::Deny, 150 * SEC),
        ["198.18.1.0/24", "2001:2::/48"]
    );
    assert_eq!(
        listed(&s.lists, ListKind::Deny, 200 * SEC),
        ["198.18.1.0/24"],
        "an entry due but not yet deleted is not listed"
    );
    assert_eq!(
        s.lists.expire(u64::MAX).expect("expire"),
        [p("2001:2::/48")]
    );
    assert_eq!(
        listed(&s.lists, ListKind::Deny, u64::MAX),
        ["198.18.1.0/24"]
    );
    assert_eq!(
        listed(&s.lists, ListKind::Allow, u64::MAX),
        ["198.18.2.0/24"],
        "allowlist entries never expire"
    );
    assert!(s.allow_v4.get(&v4_key("198.18.2.0/24"), 0).is_ok());
    assert_eq!(s.lists.next_expiry().expect("next expiry"), None);
}

#[test]
fn allow_entries_with_an_expiry_are_refused() {
    if !privileged("allow_entries_with_an_expiry_are_refused") {
        return;
    }
    let s = setup();
    let error = s
        .lists
        .add(ListKind::Allow, &ps(&["198.18.0.0/24"]), Some(100 * SEC))
        .expect_err("allowlist entries do not expire");
    assert_eq!(
        error.to_string(),
        "allowlist entries do not expire (`--for` is for the denylist); nothing was added"
    );
    assert_eq!(s.lists.len(ListKind::Allow).expect("len"), 0);
    assert!(s.allow_v4.get(&v4_key("198.18.0.0/24"), 0).is_err());
}
