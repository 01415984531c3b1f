//! What the traffic looks like: the packet samples the program hands over ([`sample`]) and
//! the per-service picture the daemon learns from them ([`baseline`]), from which attacks
//! and their signatures are told apart (issue 12), with each service's rate as the
//! program counts it ([`counted`]); the sources each service knows, in the kernel for the
//! rules ([`known`]).

pub mod baseline;
pub mod counted;
pub mod detect;
pub mod known;
pub mod mine;
pub mod sample;
pub mod view;

/// The maps the daemon's traffic task works with.
pub struct TrafficMaps {
    /// The samples and their budget.
    pub sampler: sample::Sampler,
    /// The known sources.
    pub known: known::KnownSources,
    /// The per-service counters.
    pub counters: counted::ServiceCounters,
}

impl TrafficMaps {
    /// Takes them out of a loaded object.
    ///
    /// # Errors
    /// If a map is missing or has another layout.
    pub fn take(ebpf: &mut aya::Ebpf) -> anyhow::Result<Self> {
        Ok(Self {
            sampler: sample::Sampler::take(ebpf)?,
            known: known::KnownSources::take(ebpf)?,
            counters: counted::ServiceCounters::take(ebpf)?,
        })
    }
}

/// Packets and samples for the unit tests of this module's parts.
#[cfg(test)]
mod test_packets {
    use std::net::{IpAddr, Ipv4Addr};

    use filter_common::{Class, Outcome};

    use super::sample::Sampled;
    use crate::rules::{PayloadMatch, TestPacket};

    /// A UDP packet from 198.19.`src` to 198.18.0.1, as a rule sees it; no payload if
    /// `payload` is empty.
    pub(crate) fn udp(
        src: [u8; 2],
        ports: (u16, u16),
        len: u16,
        ttl: u8,
        payload: &[u8],
    ) -> TestPacket {
        TestPacket {
            src: IpAddr::V4(Ipv4Addr::new(198, 19, src[0], src[1])),
            dst: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
            proto: 17,
            ports: Some(ports),
            icmp: None,
            tcp_flags: 0,
            len,
            dscp: 0,
            fragment: filter_common::fragment::NONE,
            ttl,
            payload: (!payload.is_empty()).then(|| PayloadMatch {
                offset: 0,
                bytes: payload.to_vec(),
                mask: vec![0xff; payload.len()],
            }),
            known_source: false,
        }
    }

    /// `packet` sampled on CPU 0, passed.
    pub(crate) fn sampled(packet: TestPacket) -> Sampled {
        Sampled {
            frame_len: u32::from(packet.len) + 14,
            packet: Some(packet),
            class: Class::Udp,
            outcome: Outcome::Passed,
            rule_slot: None,
            cpu: 0,
            frame: Vec::new(),
        }
    }
}
