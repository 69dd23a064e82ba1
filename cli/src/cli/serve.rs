//! `franzy serve`: a harness cluster for any Kafka client, until interrupted.

use franzy_harness::Cluster;

use super::Interrupt;

/// Options of `franzy serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Number of brokers.
    #[arg(long, default_value_t = 3)]
    pub brokers: i32,
    /// A topic to create, as NAME:PARTITIONS (repeatable).
    #[arg(long = "topic", value_parser = parse_topic)]
    pub topics: Vec<(String, i32)>,
    /// Address to bind and advertise.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port of the first broker; broker i listens on PORT+i. 0 picks free ports.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Do not create unknown topics on Metadata requests.
    #[arg(long)]
    pub no_auto_create: bool,
    /// Partitions of auto-created topics.
    #[arg(long, default_value_t = 1)]
    pub default_partitions: i32,
    /// Seed for the cluster's fault-injection randomness.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

fn parse_topic(spec: &str) -> Result<(String, i32), String> {
    let (name, partitions) = spec
        .rsplit_once(':')
        .ok_or_else(|| format!("topic {spec:?} is not NAME:PARTITIONS"))?;
    let partitions: i32 = partitions
        .parse()
        .map_err(|_| format!("partition count {partitions:?} of topic {name:?} is not a number"))?;
    if name.is_empty() || partitions < 1 {
        return Err(format!(
            "topic {spec:?} needs a name and at least one partition"
        ));
    }
    Ok((name.to_string(), partitions))
}

/// Runs the cluster; prints the bootstrap address alone on stdout's first line.
pub async fn run(args: ServeArgs) -> Result<(), String> {
    let mut builder = Cluster::builder()
        .brokers(args.brokers)
        .tcp(args.host, args.port)
        .auto_create_topics(!args.no_auto_create)
        .default_partitions(args.default_partitions)
        .seed(args.seed);
    for (name, partitions) in args.topics {
        builder = builder.topic(name, partitions);
    }
    let mut interrupt = Interrupt::watch()?;
    let cluster = builder.build().await.map_err(|e| e.to_string())?;
    println!("{}", cluster.bootstrap());
    tracing::info!(bootstrap = %cluster.bootstrap(), "cluster up; interrupt to stop");
    interrupt.recv().await;
    cluster.shutdown().await;
    Ok(())
}
