//! The BGP speaker: a GoBGP daemon, driven through its `gobgp` client (which speaks
//! GoBGP's gRPC API), as FastNetMon drives it. Every call has a time bound; GoBGP's JSON is
//! read back to learn what it really announces (its exit code does not say: a `del` of a
//! route it does not have exits 0).

use std::{collections::HashMap, path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};

use super::{Component, Route, RouteIndex, flowspec::component_of_json};
use crate::lists::{Family, Prefix};

/// Longest a `gobgp` call may take (a dead API socket costs one second a call).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The families floodwall reads back.
const FLOW_FAMILIES: [&str; 2] = ["ipv4-flowspec", "ipv6-flowspec"];
const UNICAST_FAMILIES: [&str; 2] = ["ipv4", "ipv6"];

/// A GoBGP daemon, reached through its client.
#[derive(Clone, Debug)]
pub struct Gobgp {
    client: PathBuf,
    target: String,
}

/// What the speaker announces: FlowSpec routes by normal form with their traffic-rate,
/// unicast routes by prefix with their communities.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Announced {
    /// FlowSpec routes: normal form → traffic-rate (bytes/s, 0 = discard).
    pub flows: RouteIndex,
    /// Unicast routes: prefix → communities, each `asn << 16 | value`.
    pub unicast: HashMap<Prefix, Vec<u32>>,
}

impl Announced {
    /// Whether the speaker has `route`: `None` not at all, `Some(false)` with another
    /// action or without the community, `Some(true)` as asked.
    #[must_use]
    pub fn has(&self, route: &Route) -> Option<bool> {
        match route {
            Route::Flowspec(flow) => self.flows.get(&flow.nlri()).map(|rate| {
                (rate - flow.action.rate()).abs() <= f32::EPSILON * rate.abs().max(1.0)
            }),
            Route::Blackhole { addr, community } => {
                let wanted = (u32::from(community.0) << 16) | u32::from(community.1);
                self.unicast
                    .get(&Prefix::host(*addr))
                    .map(|c| c.contains(&wanted))
            }
        }
    }

    /// How many of its routes are not among `routes` (someone else's).
    #[must_use]
    pub fn foreign(&self, routes: &[&Route]) -> usize {
        let flows: Vec<Vec<Component>> = routes
            .iter()
            .filter_map(|r| match r {
                Route::Flowspec(f) => Some(f.nlri()),
                Route::Blackhole { .. } => None,
            })
            .collect();
        let hosts: Vec<Prefix> = routes
            .iter()
            .filter_map(|r| match r {
                Route::Blackhole { addr, .. } => Some(Prefix::host(*addr)),
                Route::Flowspec(_) => None,
            })
            .collect();
        self.flows.keys().filter(|k| !flows.contains(k)).count()
            + self.unicast.keys().filter(|p| !hosts.contains(p)).count()
    }
}

impl Gobgp {
    /// The speaker at `target` (`gobgp --target`), through the client at `client`.
    #[must_use]
    pub fn new(client: PathBuf, target: String) -> Self {
        Self { client, target }
    }

    /// Runs the client with `args`; its standard output.
    async fn call(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut cmd = tokio::process::Command::new(&self.client);
        cmd.arg("--target")
            .arg(&self.target)
            .args(args)
            .kill_on_drop(true);
        let out = tokio::time::timeout(CALL_TIMEOUT, cmd.output())
            .await
            .with_context(|| format!("gobgp {} took over {CALL_TIMEOUT:?}", args.join(" ")))?
            .with_context(|| format!("cannot run {}", self.client.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let why = if stderr.trim().is_empty() {
                stdout.trim()
            } else {
                stderr.trim()
            };
            bail!("gobgp {} failed ({}): {why}", args.join(" "), out.status);
        }
        Ok(stdout)
    }

    /// Everything the speaker announces of the families floodwall uses.
    ///
    /// # Errors
    /// If the speaker cannot be reached or answers what cannot be read.
    pub async fn announced(&self) -> anyhow::Result<Announced> {
        let mut out = Announced::default();
        for family in FLOW_FAMILIES {
            let json = self.call(&["-j", "global", "rib", "-a", family]).await?;
            out.flows.extend(
                parse_flows(&json)
                    .with_context(|| format!("cannot read gobgp's {family} routes"))?,
            );
        }
        for family in UNICAST_FAMILIES {
            let json = self.call(&["-j", "global", "rib", "-a", family]).await?;
            out.unicast.extend(
                parse_unicast(&json)
                    .with_context(|| format!("cannot read gobgp's {family} routes"))?,
            );
        }
        Ok(out)
    }

    /// Announces `route` (a route with the same NLRI is replaced).
    ///
    /// # Errors
    /// If the speaker refuses it or cannot be reached.
    pub async fn add(&self, route: &Route) -> anyhow::Result<()> {
        self.change(route, "add").await
    }

    /// Withdraws `route`.
    ///
    /// # Errors
    /// If the speaker cannot be reached.
    pub async fn withdraw(&self, route: &Route) -> anyhow::Result<()> {
        self.change(route, "del").await
    }

    async fn change(&self, route: &Route, verb: &str) -> anyhow::Result<()> {
        let words: Vec<String> = match route {
            Route::Flowspec(flow) => {
                let mut w = vec!["global".into(), "rib".into(), "-a".into()];
                w.extend([flow.family().to_owned(), verb.to_owned()]);
                w.extend(flow.words());
                w
            }
            Route::Blackhole { addr, community } => {
                let family = match Prefix::host(*addr).family() {
                    Family::V4 => "ipv4",
                    Family::V6 => "ipv6",
                };
                let mut w: Vec<String> = ["global", "rib", "-a", family, verb]
                    .map(str::to_owned)
                    .into();
                w.push(Prefix::host(*addr).to_string());
                if verb == "add" {
                    w.extend([
                        "community".into(),
                        format!("{}:{}", community.0, community.1),
                    ]);
                    if addr.is_ipv6() {
                        // GoBGP needs a next hop of the family; the router drops the
                        // traffic whatever it is (RFC 7999).
                        w.extend(["nexthop".into(), "::".into()]);
                    }
                }
                w
            }
        };
        let args: Vec<&str> = words.iter().map(String::as_str).collect();
        self.call(&args).await.map(|_| ())
    }
}

/// GoBGP's JSON of a FlowSpec RIB (`gobgp -j global rib -a ipv4-flowspec`): an object from
/// the route's text to its paths, each with `nlri.value` (the components) and `attrs` (type
/// 16, the extended communities, has the traffic-rate).
fn parse_flows(json: &str) -> anyhow::Result<RouteIndex> {
    let rib: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).context("not a JSON object")?;
    if let Some(error) = rib.get("error").and_then(serde_json::Value::as_str) {
        bail!("gobgp says: {error}");
    }
    let mut out = RouteIndex::new();
    for (text, paths) in rib {
        let Some(path) = paths.as_array().and_then(|p| p.first()) else {
            continue;
        };
        let components = path
            .pointer("/nlri/value")
            .and_then(serde_json::Value::as_array)
            .with_context(|| format!("route {text} has no NLRI"))?
            .iter()
            .map(component_of_json)
            .collect::<Result<Vec<_>, String>>()
            .map_err(|e| anyhow::anyhow!("route {text}: {e}"))?;
        let rate = path
            .get("attrs")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter(|a| a.get("type").and_then(serde_json::Value::as_u64) == Some(16))
            .filter_map(|a| a.get("value").and_then(serde_json::Value::as_array))
            .flatten()
            .find(|c| {
                c.get("type").and_then(serde_json::Value::as_u64) == Some(128)
                    && c.get("subtype").and_then(serde_json::Value::as_u64) == Some(6)
            })
            .and_then(|c| c.get("rate").and_then(serde_json::Value::as_f64));
        #[expect(clippy::cast_possible_truncation, reason = "FlowSpec's rate is an f32")]
        // A route without a traffic-rate has no action floodwall would give: NaN equals
        // nothing, so it is replaced.
        out.insert(components, rate.map_or(f32::NAN, |r| r as f32));
    }
    Ok(out)
}

/// GoBGP's JSON of a unicast RIB: an object from the prefix to its paths, each with
/// `attrs`, type 8 holding `communities` as numbers.
fn parse_unicast(json: &str) -> anyhow::Result<HashMap<Prefix, Vec<u32>>> {
    let rib: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).context("not a JSON object")?;
    let mut out = HashMap::new();
    for (text, paths) in rib {
        let Ok(prefix) = text.parse::<Prefix>() else {
            continue;
        };
        let communities = paths
            .as_array()
            .and_then(|p| p.first())
            .and_then(|p| p.get("attrs"))
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter(|a| a.get("type").and_then(serde_json::Value::as_u64) == Some(8))
            .filter_map(|a| a.get("communities").and_then(serde_json::Value::as_array))
            .flatten()
            .filter_map(|c| c.as_u64().and_then(|c| u32::try_from(c).ok()))
            .collect();
        out.insert(prefix, communities);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gobgps_json_reads_back_into_routes_and_actions() {
        let flows = parse_flows(
            r#"{"[destination: 198.18.0.1/32][protocol: ==udp][source-port: ==123]":[{"nlri":{"value":[
                {"type":1,"value":{"prefix":"198.18.0.1/32"}},
                {"type":3,"value":[{"op":129,"value":17}]},
                {"type":6,"value":[{"op":129,"value":123}]}]},
                "attrs":[{"type":1,"value":2},{"type":16,"value":[{"type":128,"subtype":6,"as":0,"rate":1000}]}]}]}"#,
        )
        .expect("parsed");
        let route = super::super::FlowRoute::from_rule(
            &"udp sport 123 to 198.18.0.1 rate-limit 8kbps"
                .parse()
                .expect("rule"),
            None,
        )
        .expect("route");
        let announced = Announced {
            flows,
            unicast: HashMap::new(),
        };
        assert_eq!(announced.has(&Route::Flowspec(route.clone())), Some(true));
        let discard = super::super::FlowRoute {
            action: super::super::FlowAction::Discard,
            ..route
        };
        assert_eq!(announced.has(&Route::Flowspec(discard)), Some(false));
        let unicast = parse_unicast(
            r#"{"198.18.0.1/32":[{"attrs":[{"type":1,"value":2},{"type":8,"communities":[4294902426]}]}]}"#,
        )
        .expect("parsed");
        let blackhole = Route::Blackhole {
            addr: "198.18.0.1".parse().expect("addr"),
            community: (65535, 666),
        };
        let announced = Announced {
            flows: RouteIndex::new(),
            unicast,
        };
        assert_eq!(announced.has(&blackhole), Some(true));
        assert_eq!(parse_flows("{}").expect("empty").len(), 0);
        assert!(parse_flows(r#"{"error":"context deadline exceeded"}"#).is_err());
    }
}
