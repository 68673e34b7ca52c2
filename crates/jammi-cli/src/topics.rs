//! `jammi topic ...`: argument conversion and printing; subscriptions print NDJSON.

use std::io::{Read, Write};

use anyhow::{anyhow, Result};
use arrow::array::RecordBatch;
use jammi_db::topic::{topics_to_batch, Retention, StartAt, SubscribeOptions, TopicDefinition, TopicSpec};
use jammi_db::Session;

use crate::cli::{OutputFormat, TopicCommand};
use crate::print;

pub async fn run(session: &Session, command: TopicCommand, format: OutputFormat, out: &mut dyn Write) -> Result<()> {
    let topics = session.topics();
    match command {
        TopicCommand::Create { name, schema, from_table, max_age_seconds, max_events } => {
            let columns = match &schema {
                Some(text) => TopicSpec::parse_schema(text)?,
                None => Vec::new(),
            };
            let retention = Retention { max_age_ms: max_age_seconds.map(|s| s.saturating_mul(1000)), max_events };
            let info = topics.create(TopicDefinition { name, columns, source_table: from_table, retention }).await?;
            print::print_batch(&topics_to_batch(&[info])?, format, out)
        }
        TopicCommand::List => print::print_batch(&topics_to_batch(&topics.list().await?)?, format, out),
        TopicCommand::Drop { name } => {
            topics.drop(&name).await?;
            writeln!(out, "dropped topic {name}")?;
            Ok(())
        }
        TopicCommand::Publish { name, data } => {
            let text = match data {
                Some(d) => d,
                None => {
                    let mut s = String::new();
                    std::io::stdin().read_to_string(&mut s)?;
                    s
                }
            };
            let published = topics.publish_json(&name, &text).await?;
            writeln!(out, "{}", crate::print::published(published.count, published.first_offset))?;
            Ok(())
        }
        TopicCommand::Subscribe { name, from_offset, from_beginning, filter, group, limit, ack_timeout_seconds } => {
            let from = match (from_offset, from_beginning) {
                (Some(n), _) => StartAt::Offset(n),
                (None, true) => StartAt::Beginning,
                (None, false) => StartAt::Live,
            };
            let options = SubscribeOptions { from, filter, group, ack_timeout: std::time::Duration::from_secs(ack_timeout_seconds), ..Default::default() };
            let mut subscription = topics.subscribe(&name, options).await?;
            let result = print_events(&mut subscription, limit, out).await;
            // However it ended (--limit, SIGINT/SIGTERM, an error): a group member hands what
            // it claimed but did not print back to the group before the process exits.
            subscription.leave().await;
            result
        }
    }
}

/// Print events until `limit` or SIGINT/SIGTERM; each batch acknowledged once printed.
async fn print_events(subscription: &mut jammi_db::topic::Subscription, limit: Option<u64>, out: &mut dyn Write) -> Result<()> {
    let mut printed = 0u64;
    let stop = jammi_server::shutdown_signal();
    tokio::pin!(stop);
    loop {
        // `stop` first: its first poll installs the SIGINT/SIGTERM handlers, which must be in
        // place before the first event is printed (a Ctrl-C before that killed the process
        // without handing its claimed events back; found by the README tour test).
        let next = tokio::select! {
            biased;
            _ = &mut stop => return Ok(()),
            next = subscription.next() => next,
        };
        let Some(batch) = next else { return Err(anyhow!("the subscription ended")) };
        let batch = batch?;
        let batch = match limit {
            Some(l) if printed + batch.num_rows() as u64 > l => batch.slice(0, (l - printed) as usize),
            _ => batch,
        };
        write_ndjson(&batch, out)?;
        out.flush()?;
        // Acknowledged once printed: a crash before this line redelivers the events.
        subscription.ack(&batch).await?;
        printed += batch.num_rows() as u64;
        if limit.is_some_and(|l| printed >= l) {
            return Ok(());
        }
    }
}

fn write_ndjson(batch: &RecordBatch, out: &mut dyn Write) -> Result<()> {
    let mut writer = arrow::json::LineDelimitedWriter::new(out);
    writer.write(batch)?;
    writer.finish()?;
    Ok(())
}
