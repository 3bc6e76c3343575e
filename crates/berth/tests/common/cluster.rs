//! Several `berth serve` nodes on one PostgreSQL database and one S3 bucket (real servers
//! from `berth_testkit`), behind nginx (round robin, no stickiness): what "Running several
//! nodes" in the README describes.

#![allow(dead_code)] // each test binary uses a part

use berth_testkit::nginx::TestBalancer;
use berth_testkit::postgres::TestPostgres;
use berth_testkit::s3::TestS3;

use super::Berth;

/// A running cluster.
pub struct Cluster {
    /// The nodes, each reachable on its own address too.
    pub nodes: Vec<Berth>,
    /// The load balancer in front of them.
    pub balancer: TestBalancer,
    /// `http://<balancer>`.
    pub url: String,
    /// `<balancer host>:<port>`, as clients write it.
    pub host: String,
}

impl Cluster {
    /// `n` nodes on a fresh database and bucket, behind a balancer.
    pub fn start(n: usize) -> Cluster {
        let database = TestPostgres::shared().database();
        let storage = TestS3::shared().url();
        let args = [
            "--database-url",
            database.as_str(),
            "--storage-url",
            storage.as_str(),
            // The balancer's forwarding headers name the client.
            "--trusted-proxies",
            "127.0.0.1",
        ];
        let nodes: Vec<Berth> = (0..n).map(|_| Berth::start_with(&args)).collect();
        let balancer = TestBalancer::start(&nodes.iter().map(|n| n.addr).collect::<Vec<_>>());
        Cluster {
            url: balancer.url(),
            host: balancer.host(),
            nodes,
            balancer,
        }
    }
}
