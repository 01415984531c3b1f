//! Packet samples in the kernel: the daemon's budget bounds them, and each holds the
//! frame's first bytes (up to `SAMPLE_CAPTURE_BYTES`, whatever the frame's length), its
//! length, class and outcome, the rule that decided it, and the CPU that took it.

use etherparse::PacketBuilder;
use filter_common::{Class, Outcome, SAMPLE_CAPTURE_BYTES, SampleBudget, SampleStride};
use floodwall::{limits::LimitsChange, traffic::sample::Sampler};

use super::{ATTACKER4, CLIENT_MAC, Harness, SERVER_MAC, SERVER4, pin_to_cpu, privileged};

/// A UDP frame to port 53 with `payload_len` bytes of payload, each byte its own offset.
fn udp_with_payload(payload_len: usize) -> Vec<u8> {
    udp_to(53, payload_len)
}

/// A UDP frame to `port` with `payload_len` bytes of payload, each byte its own offset.
fn udp_to(port: u16, payload_len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..payload_len)
        .map(|i| u8::try_from(i % 251).expect("under 251"))
        .collect();
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
        .ipv4(ATTACKER4, SERVER4, 64)
        .udp(40_000, port)
        .write(&mut frame, &payload)
        .expect("build");
    frame
}

#[test]
fn the_budget_bounds_the_samples_and_each_holds_its_frame() {
    if !privileged("the_budget_bounds_the_samples_and_each_holds_its_frame") {
        return;
    }
    // The budget is per CPU: run every frame on one.
    let _cpu = pin_to_cpu(0);
    let mut h = Harness::new(LimitsChange::default());
    let mut samples_of = Sampler::take(&mut h.loaded.ebpf).expect("the sample maps");
    // No budget, no sample (as while no daemon refills it).
    samples_of.set_budget(0).expect("budget");
    let short = udp_with_payload(0);
    h.run_n(&short, 5);
    assert!(samples_of.drain().0.is_empty(), "a spent budget takes none");
    // Frames of every length around the word size and the capture, seven a length; a
    // budget of three.
    for len in [0usize, 1, 5, 7, 8, 13, 19, 85, 86, 87, 150, 1400] {
        let frame = udp_with_payload(len);
        samples_of.set_budget(3).expect("budget");
        h.run_n(&frame, 7);
        let (samples, bad) = samples_of.drain();
        assert_eq!(bad, 0);
        assert_eq!(
            samples.len(),
            3,
            "{} bytes: the budget's three",
            frame.len()
        );
        for s in samples {
            let n = frame.len().min(SAMPLE_CAPTURE_BYTES);
            assert_eq!(
                s.frame,
                frame[..n],
                "{} bytes: the frame's first {n}",
                frame.len()
            );
            assert_eq!(s.frame_len as usize, frame.len());
            assert_eq!(
                (s.class, s.outcome, s.rule_slot, s.cpu),
                (Class::Udp, Outcome::Passed, None, 0)
            );
            let packet = s.packet.expect("an IP packet");
            assert_eq!(packet.ports, Some((40_000, 53)));
            assert_eq!(usize::from(packet.len), 28 + len);
        }
    }
    // What is not IP is sampled too, with its outcome.
    let mut arp = udp_with_payload(20);
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    samples_of.set_budget(1).expect("budget");
    h.run(&arp);
    let (samples, _) = samples_of.drain();
    assert_eq!(samples.len(), 1);
    assert_eq!(
        (samples[0].outcome, samples[0].packet.is_none()),
        (Outcome::NonIp, true)
    );
}

/// Within a period the samples are spread: one every `every` packets from the
/// `countdown`th, until the budget is spent; the daemon's refill spreads them over the
/// packets a CPU is expected to see in a period.
#[test]
fn the_samples_are_spread_over_the_period() {
    if !privileged("the_samples_are_spread_over_the_period") {
        return;
    }
    let _cpu = pin_to_cpu(0);
    let mut h = Harness::new(LimitsChange::default());
    let mut samples_of = Sampler::take(&mut h.loaded.ebpf).expect("the sample maps");
    samples_of
        .set(SampleBudget {
            left: 2,
            countdown: 2,
            every: 3,
        })
        .expect("budget");
    // Ten frames, each told apart by its payload's length.
    for len in 0..10 {
        h.run(&udp_with_payload(len));
    }
    let (samples, _) = samples_of.drain();
    let lens: Vec<u16> = samples
        .iter()
        .map(|s| s.packet.as_ref().expect("IP").len - 28)
        .collect();
    assert_eq!(
        lens,
        [1, 4],
        "the 2nd and the 5th, then the budget is spent"
    );
    assert_eq!(samples_of.budgets().expect("read")[0].left, 0);
    // 10,000 packets a second on CPU 0 are 100 in a 10 ms period: the refill spreads
    // CPU 0's share over them, from a random first one (few enough that every packet is
    // due: see the next test for more).
    samples_of.pace(&[10_000]);
    samples_of.refill().expect("refill");
    assert_eq!(samples_of.stride().expect("read").shift, 0);
    let budget = samples_of.budgets().expect("read")[0];
    assert_eq!(budget.every, 100_u32.div_ceil(budget.left), "{budget:?}");
    assert!((1..=budget.every).contains(&budget.countdown), "{budget:?}");
    // The frames then sampled are one every `every`, from the `countdown`th.
    let (every, first) = (budget.every, budget.countdown);
    for len in 0..(first + 2 * every) as usize {
        h.run(&udp_with_payload(len % 200));
    }
    let (samples, _) = samples_of.drain();
    let lens: Vec<u32> = samples
        .iter()
        .map(|s| u32::from(s.packet.as_ref().expect("IP").len - 28))
        .collect();
    // Three, or as many as the budget's share on this host (50 over its CPUs).
    let expected: Vec<u32> = [first - 1, first - 1 + every, first - 1 + 2 * every]
        .into_iter()
        .take(budget.left as usize)
        .map(|n| n % 200)
        .collect();
    assert_eq!(lens, expected);
}

/// The payload lengths of the samples in the ring buffer.
fn sampled_lens(samples_of: &mut Sampler) -> Vec<u16> {
    samples_of
        .drain()
        .0
        .iter()
        .map(|s| s.packet.as_ref().map_or(u16::MAX, |p| p.len - 28))
        .collect()
}

/// At high rates only the packets their service's counter makes due read the budget: one
/// in 2^shift of each service's packets on a CPU, moved by the phase; a packet without a
/// service is always due. The daemon's refill sets the stride from the rate and spreads
/// the budget over the due packets.
#[test]
fn only_the_packets_the_stride_makes_due_are_sampled() {
    if !privileged("only_the_packets_the_stride_makes_due_are_sampled") {
        return;
    }
    let _cpu = pin_to_cpu(0);
    let mut h = Harness::new(LimitsChange::default());
    let mut samples_of = Sampler::take(&mut h.loaded.ebpf).expect("the sample maps");
    samples_of.set_budget(100).expect("budget");
    // One in four of udp/53's packets: its 4th, 8th, 12th (the counter starts at zero).
    samples_of
        .set_stride(SampleStride { shift: 2, phase: 0 })
        .expect("stride");
    for len in 0..12 {
        h.run(&udp_to(53, len));
    }
    assert_eq!(sampled_lens(&mut samples_of), [3, 7, 11]);
    // Another service counts for itself: udp/54's 4th packet is due, whatever udp/53's
    // count.
    for len in 0..5 {
        h.run(&udp_to(54, 20 + len));
    }
    assert_eq!(sampled_lens(&mut samples_of), [23]);
    // The phase moves which ones: udp/53's count runs on from 12, and with a phase of
    // one its 15th and 19th are due.
    samples_of
        .set_stride(SampleStride { shift: 2, phase: 1 })
        .expect("stride");
    for len in 12..20 {
        h.run(&udp_to(53, len));
    }
    assert_eq!(sampled_lens(&mut samples_of), [14, 18]);
    // A frame that is not IP has no service: always due.
    let mut arp = udp_to(53, 20);
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    h.run_n(&arp, 3);
    assert_eq!(samples_of.drain().0.len(), 3);

    // 100 million packets a second on CPU 0: the refill makes one packet in 2^shift due
    // and spreads CPU 0's share over the due packets of a period.
    samples_of.pace(&[100_000_000]);
    samples_of.refill().expect("refill");
    let stride = samples_of.stride().expect("read");
    let budget = samples_of.budgets().expect("read")[0];
    let per_period = 1_000_000u64;
    assert!(stride.shift >= 10, "{stride:?}");
    assert_eq!(
        u64::from(budget.every),
        (per_period >> stride.shift).div_ceil(u64::from(budget.left)),
        "{stride:?} {budget:?}"
    );
    // A quiet period after it: every packet is due again.
    samples_of.pace(&[1_000]);
    samples_of.refill().expect("refill");
    assert_eq!(samples_of.stride().expect("read").shift, 0);
}
