//! Networks (LXD `shared/api/network.go`).

use serde::{Deserialize, Serialize};

use crate::ConfigMap;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Network {
    pub name: String,
    pub description: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub managed: bool,
    pub status: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub config: ConfigMap,
    #[serde(deserialize_with = "crate::null_default")]
    pub used_by: Vec<String>,
    #[serde(deserialize_with = "crate::null_default")]
    pub locations: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworksPost {
    pub name: String,
    pub description: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub config: ConfigMap,
}

/// `PUT`/`PATCH /1.0/networks/NAME`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkPut {
    #[serde(deserialize_with = "crate::null_default")]
    pub config: ConfigMap,
    pub description: String,
}

/// `POST /1.0/networks/NAME` (rename).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkPost {
    pub name: String,
}

/// `GET /1.0/networks/NAME/state` (`network_state` extension).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkState {
    #[serde(deserialize_with = "crate::null_default")]
    pub addresses: Vec<NetworkStateAddress>,
    pub counters: NetworkStateCounters,
    pub hwaddr: String,
    pub mtu: i64,
    pub state: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub bridge: Option<NetworkStateBridge>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkStateAddress {
    pub family: String,
    pub address: String,
    pub netmask: String,
    pub scope: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkStateCounters {
    pub bytes_received: i64,
    pub bytes_sent: i64,
    pub packets_received: i64,
    pub packets_sent: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkStateBridge {
    pub id: String,
    pub stp: bool,
    pub forward_delay: u64,
    pub vlan_default: u64,
    pub vlan_filtering: bool,
    #[serde(deserialize_with = "crate::null_default")]
    pub upper_devices: Vec<String>,
}

/// `GET /1.0/networks/NAME/leases` (`network_leases` extension).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkLease {
    pub hostname: String,
    pub hwaddr: String,
    pub address: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub location: String,
}

/// One port of a network forward (`network_forward` extension).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkForwardPort {
    pub description: String,
    pub protocol: String,
    pub listen_port: String,
    pub target_port: String,
    pub target_address: String,
}

/// `PUT /1.0/networks/NAME/forwards/ADDRESS`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkForwardPut {
    pub description: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub config: ConfigMap,
    #[serde(deserialize_with = "crate::null_default")]
    pub ports: Vec<NetworkForwardPort>,
}

/// `POST /1.0/networks/NAME/forwards`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkForwardsPost {
    pub listen_address: String,
    pub description: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub config: ConfigMap,
    #[serde(deserialize_with = "crate::null_default")]
    pub ports: Vec<NetworkForwardPort>,
}

/// A network forward as `GET` returns it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkForward {
    pub listen_address: String,
    pub description: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub config: ConfigMap,
    #[serde(deserialize_with = "crate::null_default")]
    pub ports: Vec<NetworkForwardPort>,
    pub location: String,
}
