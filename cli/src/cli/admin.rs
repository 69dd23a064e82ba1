//! `franzy topics`, `franzy groups` and `franzy configs`: the admin commands, on
//! [`franzy::Admin`], as `kafka-topics`, `kafka-consumer-groups` and `kafka-configs` do the
//! same jobs. Output is a table for people, or JSON with `--json` (one document on stdout).
//! A per-item failure (one topic of several) is printed with its item and makes the exit
//! status 1 once everything else is done.

use std::collections::BTreeMap;

use franzy::admin::{Admin, AlterConfigOp, ConfigResource, NewTopic, ResetTo};
use franzy::{Config, IsolationLevel, TopicPartition};
use franzy_harness::Cluster;
use serde_json::{json, Value};

use super::Failure;

/// Options every admin command takes.
#[derive(clap::Args, Debug, Clone)]
pub struct AdminArgs {
    /// Bootstrap servers (host:port,...). Without it, an embedded 3-broker harness is used.
    #[arg(short = 'b', long = "bootstrap", global = true)]
    pub bootstrap: Option<String>,
    /// A Kafka client property, as key=value (repeatable).
    #[arg(short = 'X', value_name = "KEY=VALUE", global = true)]
    pub properties: Vec<String>,
    /// Print JSON for scripts instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `franzy topics`.
#[derive(clap::Args, Debug)]
pub struct TopicsArgs {
    #[command(flatten)]
    common: AdminArgs,
    #[command(subcommand)]
    command: TopicsCommand,
}

#[derive(clap::Subcommand, Debug)]
enum TopicsCommand {
    /// List the topics.
    List {
        /// Include internal topics (__consumer_offsets, ...).
        #[arg(long)]
        internal: bool,
    },
    /// Create topics.
    Create {
        /// Topic names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Partitions of each [default: the broker's num.partitions].
        #[arg(short = 'p', long, default_value_t = -1)]
        partitions: i32,
        /// Replication factor [default: the broker's default.replication.factor].
        #[arg(short = 'r', long, default_value_t = -1)]
        replication_factor: i16,
        /// A topic config, as key=value (repeatable).
        #[arg(short = 'c', long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Check the request without creating anything.
        #[arg(long)]
        validate_only: bool,
    },
    /// Delete topics.
    Delete {
        /// Topic names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Describe topics: ids, partitions, leaders, replicas, in-sync replicas.
    Describe {
        /// Topic names [default: every topic].
        names: Vec<String>,
    },
}

/// `franzy groups`.
#[derive(clap::Args, Debug)]
pub struct GroupsArgs {
    #[command(flatten)]
    common: AdminArgs,
    #[command(subcommand)]
    command: GroupsCommand,
}

#[derive(clap::Subcommand, Debug)]
enum GroupsCommand {
    /// List the groups with their states.
    List,
    /// Describe groups: state, assignor, members and their partitions.
    Describe {
        /// Group ids.
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// A group's lag per partition: end offset minus committed offset.
    Lag {
        /// The group id.
        group: String,
        /// Measure to the last stable offset (read_committed) rather than the high watermark.
        #[arg(long)]
        read_committed: bool,
    },
    /// Move a group's committed offsets, as kafka-consumer-groups --reset-offsets (a dry
    /// run unless --execute; refused while the group has members).
    ResetOffsets {
        /// The group id.
        group: String,
        /// Topics to reset [default: every topic the group committed for].
        #[arg(short = 't', long = "topic")]
        topics: Vec<String>,
        /// To the log start offsets.
        #[arg(long, group = "to")]
        to_earliest: bool,
        /// To the end offsets.
        #[arg(long, group = "to")]
        to_latest: bool,
        /// To this offset (clamped to each log's range).
        #[arg(long, group = "to", value_name = "OFFSET")]
        to_offset: Option<i64>,
        /// To the first offsets at or after this timestamp (milliseconds since the epoch).
        #[arg(long, group = "to", value_name = "MILLIS")]
        to_timestamp: Option<i64>,
        /// By this many offsets from the committed ones (negative: back).
        #[arg(long, group = "to", value_name = "N", allow_hyphen_values = true)]
        shift_by: Option<i64>,
        /// To the committed offsets (the end where there is none).
        #[arg(long, group = "to")]
        to_current: bool,
        /// Commit the new offsets (without it, only show them).
        #[arg(long)]
        execute: bool,
    },
}

/// `franzy configs`.
#[derive(clap::Args, Debug)]
pub struct ConfigsArgs {
    #[command(flatten)]
    common: AdminArgs,
    #[command(subcommand)]
    command: ConfigsCommand,
}

#[derive(clap::Subcommand, Debug)]
enum ConfigsCommand {
    /// Show a topic's or a broker's configs with their sources.
    Get {
        #[command(flatten)]
        resource: ResourceArgs,
        /// Show only the configs not at Kafka's default.
        #[arg(long)]
        changed: bool,
    },
    /// Change a topic's or a broker's configs (IncrementalAlterConfigs).
    Set {
        #[command(flatten)]
        resource: ResourceArgs,
        /// key=value to set (repeatable).
        #[arg(value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// A config to remove, back to its default (repeatable).
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
        /// Check the change without applying it.
        #[arg(long)]
        validate_only: bool,
    },
}

#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
struct ResourceArgs {
    /// The topic.
    #[arg(long)]
    topic: Option<String>,
    /// The broker id.
    #[arg(long)]
    broker: Option<i32>,
    /// The cluster-wide dynamic defaults of every broker.
    #[arg(long)]
    broker_defaults: bool,
}

impl ResourceArgs {
    fn resource(&self) -> ConfigResource {
        match (&self.topic, self.broker) {
            (Some(topic), _) => ConfigResource::Topic(topic.clone()),
            (None, Some(id)) => ConfigResource::Broker(id),
            // clap requires one of the three.
            (None, None) => ConfigResource::BrokerDefault,
        }
    }
}

/// The admin client and the embedded harness it may run against (kept alive with it).
struct Session {
    admin: Admin,
    embedded: Option<Cluster>,
}

impl Session {
    async fn open(args: &AdminArgs) -> Result<Self, String> {
        let (bootstrap, embedded) = match &args.bootstrap {
            Some(bootstrap) => (bootstrap.clone(), None),
            None => {
                let cluster = Cluster::builder()
                    .brokers(3)
                    .build()
                    .await
                    .map_err(|e| format!("cannot start the embedded harness: {e}"))?;
                eprintln!(
                    "franzy: no -b given; using an embedded harness at {}",
                    cluster.bootstrap()
                );
                (cluster.bootstrap(), Some(cluster))
            }
        };
        let mut config = Config::new(bootstrap).client_id("franzy-cli".to_string());
        for property in &args.properties {
            let (key, value) = property
                .split_once('=')
                .ok_or_else(|| format!("-X {property:?} is not KEY=VALUE"))?;
            config = config.set(key, value).map_err(|e| e.to_string())?;
        }
        let admin = Admin::new(config).map_err(|e| e.to_string())?;
        Ok(Self { admin, embedded })
    }

    async fn close(self) {
        if let Some(cluster) = self.embedded {
            cluster.shutdown().await;
        }
    }
}

/// Prints `value` as JSON, or `human` lines.
fn emit(json: bool, value: Value, human: Vec<String>) {
    if json {
        println!("{value}");
    } else {
        for line in human {
            println!("{line}");
        }
    }
}

/// Per-item outcomes: the JSON object of each item, the errors printed to stderr; a failure
/// when any item failed.
fn per_item<K: std::fmt::Display, V>(
    results: BTreeMap<K, Result<V, franzy::Error>>,
    ok: impl Fn(&K, &V) -> (Value, String),
) -> (Vec<Value>, Vec<String>, bool) {
    let mut values = Vec::new();
    let mut lines = Vec::new();
    let mut failed = false;
    for (key, result) in results {
        match result {
            Ok(value) => {
                let (json, line) = ok(&key, &value);
                values.push(json);
                lines.push(line);
            }
            Err(error) => {
                failed = true;
                eprintln!("franzy: {key}: {error}");
                values.push(json!({"name": key.to_string(), "error": error.to_string(),
                    "code": error.code().map(|c| format!("{c:?}"))}));
            }
        }
    }
    (values, lines, failed)
}

fn outcome(failed: bool) -> Result<(), Failure> {
    if failed {
        Err(Failure::Reported)
    } else {
        Ok(())
    }
}

fn key_values(pairs: &[String], what: &str) -> Result<BTreeMap<String, String>, String> {
    pairs
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("{what} {pair:?} is not KEY=VALUE"))
        })
        .collect()
}

/// Runs `franzy topics`.
pub async fn topics(args: TopicsArgs) -> Result<(), Failure> {
    let session = Session::open(&args.common).await?;
    let result = topics_with(&session.admin, args.common.json, args.command).await;
    session.close().await;
    result
}

async fn topics_with(admin: &Admin, json: bool, command: TopicsCommand) -> Result<(), Failure> {
    let failed = |e: franzy::Error| Failure::Message(e.to_string());
    match command {
        TopicsCommand::List { internal } => {
            let topics = admin.list_topics(internal).await.map_err(failed)?;
            let value = json!(topics
                .iter()
                .map(|t| json!({"name": t.name, "id": t.id.to_string(), "internal": t.internal}))
                .collect::<Vec<_>>());
            emit(json, value, topics.iter().map(|t| t.name.clone()).collect());
            Ok(())
        }
        TopicsCommand::Create {
            names,
            partitions,
            replication_factor,
            configs,
            validate_only,
        } => {
            let configs = key_values(&configs, "--config")?;
            let topics: Vec<NewTopic> = names
                .iter()
                .map(|name| NewTopic {
                    name: name.clone(),
                    partitions,
                    replication_factor,
                    configs: configs.clone(),
                })
                .collect();
            let results = admin
                .create_topics(&topics, validate_only)
                .await
                .map_err(failed)?;
            let verb = if validate_only { "valid" } else { "created" };
            let (values, lines, any_failed) = per_item(results, |name, created| {
                (
                    json!({"name": name, "id": created.id.to_string(),
                        "partitions": created.partitions,
                        "replication_factor": created.replication_factor}),
                    format!(
                        "{verb} {name} ({} partitions, replication factor {})",
                        created.partitions, created.replication_factor
                    ),
                )
            });
            emit(json, json!(values), lines);
            outcome(any_failed)
        }
        TopicsCommand::Delete { names } => {
            let results = admin.delete_topics(&names).await.map_err(failed)?;
            let (values, lines, any_failed) = per_item(results, |name, ()| {
                (
                    json!({"name": name, "deleted": true}),
                    format!("deleted {name}"),
                )
            });
            emit(json, json!(values), lines);
            outcome(any_failed)
        }
        TopicsCommand::Describe { names } => {
            let names = if names.is_empty() {
                admin
                    .list_topics(false)
                    .await
                    .map_err(failed)?
                    .into_iter()
                    .map(|t| t.name)
                    .collect()
            } else {
                names
            };
            let results = admin.describe_topics(&names).await.map_err(failed)?;
            let (values, lines, any_failed) = per_item(results, |name, d| {
                let partitions: Vec<Value> = d
                    .partitions
                    .iter()
                    .map(|p| {
                        json!({"partition": p.partition, "leader": p.leader,
                        "leader_epoch": p.leader_epoch, "replicas": p.replicas, "isr": p.isr})
                    })
                    .collect();
                let mut text = format!(
                    "Topic: {name}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {}",
                    d.id,
                    d.partitions.len(),
                    d.partitions.first().map_or(0, |p| p.replicas.len())
                );
                for p in &d.partitions {
                    text.push_str(&format!(
                        "\n\tTopic: {name}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
                        p.partition,
                        p.leader,
                        join(&p.replicas),
                        join(&p.isr)
                    ));
                }
                (
                    json!({"name": name, "id": d.id.to_string(), "internal": d.internal,
                        "partitions": partitions}),
                    text,
                )
            });
            emit(json, json!(values), lines);
            outcome(any_failed)
        }
    }
}

fn join(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// Runs `franzy groups`.
pub async fn groups(args: GroupsArgs) -> Result<(), Failure> {
    let session = Session::open(&args.common).await?;
    let result = groups_with(&session.admin, args.common.json, args.command).await;
    session.close().await;
    result
}

async fn groups_with(admin: &Admin, json: bool, command: GroupsCommand) -> Result<(), Failure> {
    let failed = |e: franzy::Error| Failure::Message(e.to_string());
    match command {
        GroupsCommand::List => {
            let groups = admin.list_groups().await.map_err(failed)?;
            let value = json!(groups
                .iter()
                .map(|g| json!({"group": g.group_id, "state": g.state,
                    "protocol_type": g.protocol_type, "coordinator": g.coordinator}))
                .collect::<Vec<_>>());
            let mut lines = vec![format!("{:<40} {:<20} {}", "GROUP", "STATE", "TYPE")];
            lines.extend(
                groups
                    .iter()
                    .map(|g| format!("{:<40} {:<20} {}", g.group_id, g.state, g.protocol_type)),
            );
            emit(json, value, lines);
            Ok(())
        }
        GroupsCommand::Describe { groups } => {
            let results = admin.describe_groups(&groups).await.map_err(failed)?;
            let (values, lines, any_failed) = per_item(results, |id, g| {
                let members: Vec<Value> = g
                    .members
                    .iter()
                    .map(|m| json!({"member_id": m.member_id, "instance_id": m.instance_id,
                        "client_id": m.client_id, "host": m.host,
                        "assignment": m.assignment.iter().map(TopicPartition::to_string).collect::<Vec<_>>()}))
                    .collect();
                let mut text = format!(
                    "Group: {id}\tState: {}\tProtocol: {}\tCoordinator: {}\tMembers: {}",
                    g.state,
                    g.protocol,
                    g.coordinator,
                    g.members.len()
                );
                for m in &g.members {
                    text.push_str(&format!(
                        "\n\t{}\t{}\t{}\t{}",
                        m.member_id,
                        m.client_id,
                        m.host,
                        m.assignment
                            .iter()
                            .map(TopicPartition::to_string)
                            .collect::<Vec<_>>()
                            .join(",")
                    ));
                }
                (
                    json!({"group": id, "state": g.state, "protocol_type": g.protocol_type,
                        "protocol": g.protocol, "coordinator": g.coordinator, "members": members}),
                    text,
                )
            });
            emit(json, json!(values), lines);
            outcome(any_failed)
        }
        GroupsCommand::Lag {
            group,
            read_committed,
        } => {
            let isolation = if read_committed {
                IsolationLevel::ReadCommitted
            } else {
                IsolationLevel::ReadUncommitted
            };
            let lag = admin.lag(&group, isolation).await.map_err(failed)?;
            let value = json!(lag
                .iter()
                .map(
                    |l| json!({"topic": l.partition.topic, "partition": l.partition.partition,
                    "committed": l.committed, "end": l.end, "lag": l.lag})
                )
                .collect::<Vec<_>>());
            let dash = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
            let mut lines = vec![format!(
                "{:<30} {:>9} {:>15} {:>15} {:>10}",
                "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"
            )];
            lines.extend(lag.iter().map(|l| {
                format!(
                    "{:<30} {:>9} {:>15} {:>15} {:>10}",
                    l.partition.topic,
                    l.partition.partition,
                    dash(l.committed),
                    l.end,
                    dash(l.lag)
                )
            }));
            emit(json, value, lines);
            Ok(())
        }
        GroupsCommand::ResetOffsets {
            group,
            topics,
            to_earliest,
            to_latest,
            to_offset,
            to_timestamp,
            shift_by,
            to_current,
            execute,
        } => {
            let to = match (to_earliest, to_latest, to_offset, to_timestamp, shift_by, to_current) {
                (true, ..) => ResetTo::Earliest,
                (_, true, ..) => ResetTo::Latest,
                (_, _, Some(offset), ..) => ResetTo::Offset(offset),
                (_, _, _, Some(timestamp), ..) => ResetTo::Timestamp(timestamp),
                (_, _, _, _, Some(delta), _) => ResetTo::ShiftBy(delta),
                (.., true) => ResetTo::Current,
                _ => {
                    return Err(Failure::Message(
                        "say where to: --to-earliest, --to-latest, --to-offset, --to-timestamp, --shift-by or --to-current".into(),
                    ))
                }
            };
            let targets = admin
                .reset_offsets(&group, &topics, &to, !execute)
                .await
                .map_err(failed)?;
            let value = json!({"group": group, "executed": execute,
                "offsets": targets.iter().map(|(tp, o)| json!({"topic": tp.topic,
                    "partition": tp.partition, "offset": o})).collect::<Vec<_>>()});
            let mut lines = vec![format!(
                "{:<30} {:>9} {:>15}",
                "TOPIC", "PARTITION", "NEW-OFFSET"
            )];
            lines.extend(
                targets
                    .iter()
                    .map(|(tp, o)| format!("{:<30} {:>9} {:>15}", tp.topic, tp.partition, o)),
            );
            if !execute {
                lines.push("(dry run: add --execute to commit these offsets)".into());
            }
            emit(json, value, lines);
            Ok(())
        }
    }
}

/// Runs `franzy configs`.
pub async fn configs(args: ConfigsArgs) -> Result<(), Failure> {
    let session = Session::open(&args.common).await?;
    let result = configs_with(&session.admin, args.common.json, args.command).await;
    session.close().await;
    result
}

async fn configs_with(admin: &Admin, json: bool, command: ConfigsCommand) -> Result<(), Failure> {
    let failed = |e: franzy::Error| Failure::Message(e.to_string());
    match command {
        ConfigsCommand::Get { resource, changed } => {
            let resource = resource.resource();
            let mut results = admin
                .describe_configs(std::slice::from_ref(&resource))
                .await
                .map_err(failed)?;
            let entries = match results.remove(&resource) {
                Some(Ok(entries)) => entries,
                Some(Err(error)) => return Err(Failure::Message(format!("{resource}: {error}"))),
                None => return Err(Failure::Message(format!("{resource}: no answer"))),
            };
            let entries: Vec<_> = entries
                .into_iter()
                .filter(|e| !changed || e.source != 5)
                .collect();
            let value = json!(entries
                .iter()
                .map(
                    |e| json!({"name": e.name, "value": e.value, "source": e.source_name(),
                    "read_only": e.read_only, "sensitive": e.sensitive})
                )
                .collect::<Vec<_>>());
            let lines = entries
                .iter()
                .map(|e| {
                    format!(
                        "{}={}\t({})",
                        e.name,
                        e.value.as_deref().unwrap_or("(sensitive)"),
                        e.source_name()
                    )
                })
                .collect();
            emit(json, value, lines);
            Ok(())
        }
        ConfigsCommand::Set {
            resource,
            set,
            delete,
            validate_only,
        } => {
            let resource = resource.resource();
            let mut ops: Vec<AlterConfigOp> = key_values(&set, "config")?
                .into_iter()
                .map(|(k, v)| AlterConfigOp::Set(k, v))
                .collect();
            ops.extend(delete.into_iter().map(AlterConfigOp::Delete));
            if ops.is_empty() {
                return Err(Failure::Message(
                    "nothing to change: give KEY=VALUE or --delete KEY".into(),
                ));
            }
            let results = admin
                .incremental_alter_configs(&[(resource, ops)], validate_only)
                .await
                .map_err(failed)?;
            let verb = if validate_only { "valid" } else { "updated" };
            let (values, lines, any_failed) = per_item(results, |resource, ()| {
                (
                    json!({"resource": resource.to_string(), "ok": true}),
                    format!("{verb}: {resource}"),
                )
            });
            emit(json, json!(values), lines);
            outcome(any_failed)
        }
    }
}
