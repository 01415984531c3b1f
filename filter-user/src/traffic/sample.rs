//! Packet samples from the program (`filter_common::PacketSample`): the sample ring buffer
//! and the per-CPU budget that bounds it, and a sample decoded into the packet a rule sees.

use std::os::fd::AsFd as _;

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    maps::{Array, MapData, PerCpuArray, PerCpuValues, RingBuf},
};
use filter_common::{
    Class, MAX_SAMPLE_SHIFT, NO_RULE, Outcome, PacketSample, SAMPLE_REFILL_MS, SAMPLE_STRIDE_MAP,
    SAMPLES_PER_REFILL, SampleBudget, SampleStride, map_names,
};

use crate::rules::TestPacket;

/// One sampled packet, decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampled {
    /// What a rule would see of it; `None` for a frame that is not IP (or too short to say).
    pub packet: Option<TestPacket>,
    /// The frame's whole length in bytes.
    pub frame_len: u32,
    /// Its class.
    pub class: Class,
    /// What the program decided.
    pub outcome: Outcome,
    /// The rule slot whose action decided it, if a rule's did.
    pub rule_slot: Option<u32>,
    /// The CPU that took it.
    pub cpu: u32,
    /// The captured bytes of the frame (for a pcap of an attack).
    pub frame: Vec<u8>,
}

impl Sampled {
    /// Decodes a record of the sample ring buffer; `None` for a record that is not a whole
    /// sample or names an outcome this build does not know.
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let raw: PacketSample = crate::events::read_record(bytes)?;
        let outcome = Outcome::try_from(u32::from(raw.outcome)).ok()?;
        let class = Class::try_from(u32::from(raw.class)).ok()?;
        let frame = raw.frame().to_vec();
        Some(Self {
            packet: TestPacket::from_frame(&frame).ok(),
            frame_len: raw.frame_len,
            class,
            outcome,
            rule_slot: (raw.rule_slot != NO_RULE).then_some(raw.rule_slot),
            cpu: raw.cpu,
            frame,
        })
    }
}

/// Each CPU's share of [`SAMPLES_PER_REFILL`]: at least one, so that every CPU's traffic
/// is seen.
#[must_use]
pub fn budget_per_cpu(cpus: usize) -> u32 {
    (SAMPLES_PER_REFILL / u32::try_from(cpus.max(1)).unwrap_or(u32::MAX)).max(1)
}

/// A CPU's budget for the next period: `share` samples, spread over as many packets as it
/// is expected to see in a period (`packets`), one every `packets / share` (rounded up:
/// a few samples fewer rather than the last packets left out), the first at a random one
/// of those (`random`), so that no packet's place in the period decides whether it is
/// sampled.
#[must_use]
pub fn spread(share: u32, packets: u64, random: u32) -> SampleBudget {
    let every = u32::try_from(packets.div_ceil(u64::from(share.max(1))))
        .unwrap_or(u32::MAX)
        .max(1);
    SampleBudget {
        left: share,
        countdown: 1 + random % every,
        every,
    }
}

/// Due packets ([`SampleStride`]) a CPU should see for each sample of its share, at
/// least: enough for the budget's random first one and its spread to choose among.
const DUE_PER_SAMPLE: u64 = 4;

/// The stride's shift for a period in which the CPUs expect `per_period` packets each and
/// take `share` samples each: the largest that leaves the quietest CPU with packets at
/// least [`DUE_PER_SAMPLE`] due packets a sample, so that most packets
/// skip the budget at high rates, and every packet is due at low ones.
#[must_use]
pub fn stride_shift(share: u32, per_period: &[u64]) -> u32 {
    let fewest = per_period
        .iter()
        .copied()
        .filter(|&p| p > 0)
        .min()
        .unwrap_or(0);
    let due_per_sample = fewest / u64::from(share.max(1)) / DUE_PER_SAMPLE;
    due_per_sample
        .checked_ilog2()
        .map_or(0, |shift| shift.min(MAX_SAMPLE_SHIFT))
}

/// The sample ring buffer, the budget and the stride.
pub struct Sampler {
    ring: RingBuf<MapData>,
    budget: PerCpuArray<MapData, SampleBudget>,
    stride: Array<MapData, SampleStride>,
    cpus: usize,
    /// Each CPU's packets in a refill period, as of its rate in the last second.
    per_period: Vec<u64>,
    /// A xorshift generator's state, for where each period's first sample falls.
    random: u32,
}

impl Sampler {
    /// Takes the sample maps out of a loaded object.
    ///
    /// # Errors
    /// If a map is missing or of another type.
    pub fn take(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| anyhow!("the XDP object has no map named {name}"))
        };
        let ring = RingBuf::try_from(take(map_names::SAMPLES)?)
            .with_context(|| format!("map {} is not a ring buffer", map_names::SAMPLES))?;
        let budget = PerCpuArray::try_from(take(map_names::SAMPLE_BUDGET)?).with_context(|| {
            format!(
                "map {} is not a per-CPU array of sample budgets",
                map_names::SAMPLE_BUDGET
            )
        })?;
        let stride = Array::try_from(take(SAMPLE_STRIDE_MAP)?).with_context(|| {
            format!("map {SAMPLE_STRIDE_MAP} is not the one-element array of the sample stride")
        })?;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| anyhow!("possible CPUs: {e}"))?;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Ok(Self {
            ring,
            budget,
            stride,
            cpus,
            per_period: Vec::new(),
            random: seed | 1,
        })
    }

    /// Sets every CPU's budget to `budget`.
    ///
    /// # Errors
    /// If the kernel refuses the update.
    pub fn set(&mut self, budget: SampleBudget) -> anyhow::Result<()> {
        self.write(vec![budget; self.cpus])
    }

    /// Sets every CPU's budget to the first `samples` packets.
    ///
    /// # Errors
    /// As [`Sampler::set`].
    pub fn set_budget(&mut self, samples: u32) -> anyhow::Result<()> {
        self.set(SampleBudget {
            left: samples,
            countdown: 1,
            every: 1,
        })
    }

    /// Sets which packets are due for a sample.
    ///
    /// # Errors
    /// If the kernel refuses the update.
    pub fn set_stride(&mut self, stride: SampleStride) -> anyhow::Result<()> {
        self.stride
            .set(0, stride, 0)
            .with_context(|| format!("cannot set the sample stride ({SAMPLE_STRIDE_MAP})"))
    }

    /// The stride as the program reads it.
    ///
    /// # Errors
    /// If the kernel refuses the lookup.
    pub fn stride(&self) -> anyhow::Result<SampleStride> {
        self.stride
            .get(&0, 0)
            .with_context(|| format!("cannot read the sample stride ({SAMPLE_STRIDE_MAP})"))
    }

    /// Each CPU's budget as the program left it.
    ///
    /// # Errors
    /// If the kernel refuses the lookup.
    pub fn budgets(&self) -> anyhow::Result<Vec<SampleBudget>> {
        let values = self
            .budget
            .get(&0, 0)
            .with_context(|| format!("cannot read {}", map_names::SAMPLE_BUDGET))?;
        Ok(values.iter().copied().collect())
    }

    fn write(&mut self, budgets: Vec<SampleBudget>) -> anyhow::Result<()> {
        let values =
            PerCpuValues::try_from(budgets).context("per-CPU values of the sample budget")?;
        self.budget
            .set(0, values, 0)
            .with_context(|| format!("cannot refill {}", map_names::SAMPLE_BUDGET))
    }

    /// Sets each CPU's expected packets in a refill period from its packets a second in
    /// the last second (by CPU): the spread of the refills to come.
    pub fn pace(&mut self, packets_per_second_by_cpu: &[u64]) {
        let periods_per_second = 1_000 / SAMPLE_REFILL_MS;
        self.per_period = packets_per_second_by_cpu
            .iter()
            .map(|pps| pps / periods_per_second)
            .collect();
    }

    /// Refills every CPU's budget with its share of [`SAMPLES_PER_REFILL`], spread over the
    /// due packets it is expected to see in the period ([`stride_shift`], [`spread`],
    /// [`Sampler::pace`]), with a new phase of the stride.
    ///
    /// # Errors
    /// If the kernel refuses the update.
    pub fn refill(&mut self) -> anyhow::Result<()> {
        let share = budget_per_cpu(self.cpus);
        let shift = stride_shift(share, &self.per_period);
        let phase = self.next_random();
        self.set_stride(SampleStride { shift, phase })?;
        let next: Vec<SampleBudget> = (0..self.cpus)
            .map(|cpu| {
                let packets = self.per_period.get(cpu).copied().unwrap_or(0);
                spread(share, packets >> shift, self.next_random())
            })
            .collect();
        self.write(next)
    }

    /// The next number of the xorshift generator.
    fn next_random(&mut self) -> u32 {
        self.random ^= self.random << 13;
        self.random ^= self.random >> 17;
        self.random ^= self.random << 5;
        self.random
    }

    /// The samples in the ring buffer now, oldest first; records that do not decode are
    /// counted in the second value.
    pub fn drain(&mut self) -> (Vec<Sampled>, usize) {
        let (mut out, mut bad) = (Vec::new(), 0);
        while let Some(item) = self.ring.next() {
            match Sampled::decode(&item) {
                Some(s) => out.push(s),
                None => bad += 1,
            }
        }
        (out, bad)
    }

    /// The ring buffer's fd, to wait until it is readable.
    #[must_use]
    pub fn ring_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.ring.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_budget_spreads_its_samples_over_the_packets_expected() {
        // A quiet period: every packet, from the first.
        assert_eq!(
            spread(25, 10, 12_345),
            SampleBudget {
                left: 25,
                countdown: 1,
                every: 1,
            }
        );
        // 2,500 packets for 25 samples: one in 100, the first at a random one of the
        // first 100.
        let b = spread(25, 2_500, 12_345);
        assert_eq!((b.left, b.every, b.countdown), (25, 100, 1 + 12_345 % 100));
        for random in [0, 1, 99, 100, u32::MAX] {
            let b = spread(25, 2_500, random);
            assert!((1..=100).contains(&b.countdown), "{b:?}");
        }
        // 40 packets for 25 samples: one in two (20 samples), not the first 25.
        assert_eq!(spread(25, 40, 0).every, 2);
        // No share: no division by zero.
        assert_eq!(spread(0, 100, 7).every, 100);
    }

    #[test]
    fn the_stride_leaves_the_quietest_cpu_a_few_due_packets_a_sample() {
        // Quiet: every packet is due.
        assert_eq!(stride_shift(25, &[]), 0);
        assert_eq!(stride_shift(25, &[0, 0]), 0);
        assert_eq!(stride_shift(25, &[199, 10_000_000]), 0);
        // 1 Mpps on each of two CPUs: 10,000 packets a period for 25 samples, 400 a sample,
        // 100 due ones at least: one in 64.
        assert_eq!(stride_shift(25, &[10_000, 10_000]), 6);
        // The quietest CPU that has packets sets it; an idle one does not.
        assert_eq!(stride_shift(25, &[10_000, 1_000_000, 0]), 6);
        for per_period in [100, 1_000, 10_000, 1_000_000, u64::MAX] {
            let shift = stride_shift(25, &[per_period]);
            let due = per_period >> shift;
            assert!(
                shift == 0 || due >= 25 * DUE_PER_SAMPLE,
                "{per_period}: {shift}"
            );
            assert!(shift <= MAX_SAMPLE_SHIFT);
        }
        // No share: no division by zero.
        assert_eq!(stride_shift(0, &[1_000]), 7);
    }

    #[test]
    fn the_budget_is_shared_by_the_cpus_and_each_gets_one_at_least() {
        assert_eq!(budget_per_cpu(1), 50);
        assert_eq!(budget_per_cpu(2), 25);
        assert_eq!(budget_per_cpu(8), 6);
        assert_eq!(budget_per_cpu(64), 1);
        assert_eq!(budget_per_cpu(0), 50);
    }
}
