//! The book's safety rules and the plan, on plain data.

use std::time::Duration;

use super::*;

fn config() -> UpstreamConfig {
    UpstreamConfig {
        gobgp_api: "unix:///nonexistent".into(),
        dry_run: false,
        protected: vec!["198.18.0.0/24".parse().expect("prefix")],
        prefix_len_v4: (25, 32),
        max_routes: 2,
        max_new_per_minute: 3,
        min_hold: Duration::from_secs(5),
        ..UpstreamConfig::default()
    }
}

fn flow(text: &str) -> NewAnnouncement {
    NewAnnouncement {
        route: Route::Flowspec(
            FlowRoute::from_rule(&text.parse().expect("a rule"), None).expect("a route"),
        ),
        origin: Origin::Operator,
        for_ms: None,
    }
}

fn refused(book: &mut UpstreamBook, new: NewAnnouncement, allow: &[Prefix], now: u64) -> String {
    let before = book.clone();
    let e = book
        .announce(&config(), new, allow, now)
        .expect_err("refused")
        .to_string();
    assert_eq!(*book, before, "a refusal changes nothing");
    e
}

#[test]
fn every_safety_rule_refuses_by_name_and_changes_nothing() {
    let mut book = UpstreamBook::default();
    let c = config();
    assert!(refused(&mut book, flow("udp to 198.19.0.1 drop"), &[], 0).contains("protected"));
    assert!(refused(&mut book, flow("udp to 198.18.0.0/24 drop"), &[], 0).contains("/25 to /32"));
    let allow: Vec<Prefix> = vec!["198.18.5.0/24".parse().expect("prefix")];
    assert!(refused(&mut book, flow("udp to 198.18.0.1 drop"), &allow, 0).contains("allowlisted"));
    assert!(
        refused(
            &mut book,
            flow("udp from 198.18.5.7 to 198.18.0.1 drop"),
            &allow,
            0
        )
        .contains("allowlisted")
    );
    // A source that does not overlap the allowlist is fine.
    book.announce(
        &c,
        flow("udp from 198.18.9.0/24 to 198.18.0.1 drop"),
        &allow,
        0,
    )
    .expect("announced");
    assert!(
        refused(
            &mut book,
            flow("udp from 198.18.9.0/24 to 198.18.0.1 drop"),
            &[],
            0
        )
        .contains("already covers")
    );
    let short = NewAnnouncement {
        for_ms: Some(1000),
        ..flow("tcp to 198.18.0.1 drop")
    };
    assert!(refused(&mut book, short, &[], 0).contains("min_hold"));
    book.announce(&c, flow("tcp to 198.18.0.1 drop"), &[], 0)
        .expect("the second");
    assert!(refused(&mut book, flow("icmp to 198.18.0.1 drop"), &[], 0).contains("max_routes"));
    let blackhole = |addr: &str| NewAnnouncement {
        route: Route::Blackhole {
            addr: addr.parse().expect("addr"),
            community: (65535, 666),
        },
        origin: Origin::Operator,
        for_ms: None,
    };
    assert!(refused(&mut book, blackhole("198.19.0.1"), &[], 0).contains("protected"));
}

#[test]
fn the_per_minute_cap_counts_the_last_minute() {
    let c = UpstreamConfig {
        max_routes: 10,
        ..config()
    };
    let mut book = UpstreamBook::default();
    for (i, port) in [1, 2, 3].into_iter().enumerate() {
        book.announce(
            &c,
            flow(&format!("udp dport {port} to 198.18.0.1 drop")),
            &[],
            i as u64,
        )
        .expect("under the cap");
    }
    let e = book
        .announce(&c, flow("udp dport 4 to 198.18.0.1 drop"), &[], 10)
        .expect_err("over the cap");
    assert!(e.to_string().contains("max_new_per_minute"), "{e}");
    book.announce(&c, flow("udp dport 4 to 198.18.0.1 drop"), &[], 60_001)
        .expect("a minute later");
}

#[test]
fn the_plan_adds_what_is_missing_and_withdraws_what_ended_after_its_hold() {
    let c = config();
    let mut book = UpstreamBook::default();
    let id = book
        .announce(&c, flow("udp sport 123 to 198.18.0.1 drop"), &[], 0)
        .expect("announced");
    let route = book.announcements()[0].route.clone();
    let none = Announced::default();
    assert_eq!(plan(&book, &c, &none, 1000).add, vec![route.clone()]);
    let Route::Flowspec(f) = &route else {
        unreachable!()
    };
    let mut has = Announced::default();
    has.flows.insert(f.nlri(), 0.0);
    assert_eq!(plan(&book, &c, &has, 1000), Plan::default());
    // Withdrawn at 1 s: it stays until its 5 s hold is over.
    book.withdraw(&[id], 1000).expect("withdrawn");
    assert_eq!(plan(&book, &c, &has, 4999), Plan::default());
    assert_eq!(plan(&book, &c, &has, 5000).withdraw, vec![route]);
    assert!(book.withdraw(&[id], 6000).is_err(), "twice");
    // Gone from the speaker: forgotten.
    book.forget_gone(&c, &none, 6000);
    assert!(book.announcements().is_empty());
}

#[test]
fn expiry_ends_an_announcement_and_the_book_survives_a_restart() {
    let c = config();
    let mut book = UpstreamBook::default();
    let new = NewAnnouncement {
        for_ms: Some(10_000),
        ..flow("udp to 198.18.0.1 drop")
    };
    book.announce(&c, new, &[], 0).expect("announced");
    assert!(book.announcements()[0].live(9_999, c.min_hold));
    assert!(!book.announcements()[0].live(10_000, c.min_hold));
    let dir = std::env::temp_dir().join(format!("fw-upstream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("upstream.json");
    book.save(&path).expect("saved");
    assert_eq!(UpstreamBook::load(&path).expect("loaded"), book);
    std::fs::remove_dir_all(&dir).expect("removed");
    assert_eq!(
        UpstreamBook::load(&dir.join("none.json")).expect("no file"),
        UpstreamBook::default()
    );
}

#[test]
fn a_route_announced_again_while_its_old_self_is_withdrawn_is_not_taken_away() {
    let c = UpstreamConfig {
        max_routes: 4,
        ..config()
    };
    let mut book = UpstreamBook::default();
    let first = book
        .announce(&c, flow("udp sport 123 to 198.18.0.1 drop"), &[], 0)
        .expect("announced");
    book.withdraw(&[first], 6000).expect("withdrawn");
    book.announce(&c, flow("udp sport 123 to 198.18.0.1 drop"), &[], 7000)
        .expect("the same route again, once the first ended");
    let Route::Flowspec(f) = &book.announcements()[0].route else {
        unreachable!()
    };
    let mut has = Announced::default();
    has.flows.insert(f.nlri(), 0.0);
    assert_eq!(plan(&book, &c, &has, 7000), Plan::default());
    book.forget_gone(&c, &has, 7000);
    assert_eq!(book.announcements().len(), 1, "the ended one is forgotten");
}

#[test]
fn auto_above_is_a_bit_rate_or_a_share_of_the_line_rate() {
    assert_eq!(AutoAbove::parse("800mbps"), Ok(AutoAbove::Bps(800_000_000)));
    assert_eq!(AutoAbove::parse("80%"), Ok(AutoAbove::LineRate(0.8)));
    assert_eq!(
        AutoAbove::parse("80%").map(|a| a.bps(Some(10_000_000_000))),
        Ok(Some(8_000_000_000))
    );
    assert_eq!(AutoAbove::LineRate(0.8).bps(None), None);
    assert_eq!(AutoAbove::Bps(5).bps(None), Some(5));
    for bad in ["0bps", "800", "120%", "0%", "fast"] {
        assert!(AutoAbove::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn foreign_routes_are_the_speakers_routes_that_are_not_ours() {
    let ours = flow("udp sport 123 to 198.18.0.1 drop").route;
    let theirs = flow("tcp dport 22 to 198.18.0.2 drop").route;
    let blackhole = |addr: &str| Route::Blackhole {
        addr: addr.parse().expect("addr"),
        community: (65535, 666),
    };
    let (Route::Flowspec(ours_flow), Route::Flowspec(theirs_flow)) = (&ours, &theirs) else {
        unreachable!()
    };
    let mut has = Announced::default();
    assert_eq!(has.foreign(&[]), 0, "nothing announced, nothing foreign");
    has.flows.insert(ours_flow.nlri(), 0.0);
    has.unicast.insert(
        "198.18.0.9/32".parse().expect("prefix"),
        vec![0xFFFF_029A], // 65535:666
    );
    assert_eq!(has.foreign(&[&ours, &blackhole("198.18.0.9")]), 0);
    // Another FlowSpec route and another host route at the speaker: someone else's.
    has.flows.insert(theirs_flow.nlri(), 0.0);
    has.unicast
        .insert("198.18.0.10/32".parse().expect("prefix"), vec![]);
    assert_eq!(has.foreign(&[&ours, &blackhole("198.18.0.9")]), 2);
    // Our blackhole asked but not there does not count; the FlowSpec route of ours is not
    // foreign whatever its action.
    has.flows.insert(ours_flow.nlri(), 1000.0);
    assert_eq!(has.foreign(&[&ours, &theirs, &blackhole("198.18.0.11")]), 2);
}
