# AWS events, unless var.aws_events is false: two EventBridge rules send
# Glue's table state changes (an Iceberg commit swapped a table's metadata)
# and job state changes (a run ended) to an SQS queue that sluice's leader
# long-polls (SLUICE__EVENTS__QUEUE_URL, service.tf). sluice then refreshes
# the table, or reads the run, at once instead of at its next listing
# reconcile or run poll. AWS delivers these events best effort, so the
# reconcile and the polls keep running: a lost event only waits for them.
# The targets send each event as is (the event's JSON is the message body),
# the shape sluice parses.

locals {
  events = var.aws_events
  events_queues = local.events ? {
    events       = aws_sqs_queue.events[0]
    dead_letters = aws_sqs_queue.events_dead_letters[0]
  } : {}
  # What may use the queues and the key (main.tf) on EventBridge's side.
  events_rule_arns = local.events ? [
    aws_cloudwatch_event_rule.glue_tables[0].arn,
    aws_cloudwatch_event_rule.glue_jobs[0].arn,
  ] : []
}

# An event older than a day is worthless: the reconcile and the run polls
# have long caught up with it. A day still outlasts any pause of the leader.
resource "aws_sqs_queue" "events" {
  count                     = local.events ? 1 : 0
  name                      = "${var.name}-events"
  kms_master_key_id         = aws_kms_key.this.arn
  message_retention_seconds = 86400
  # sluice deletes each message once handled; one received five times and
  # never deleted is set aside rather than handed out again.
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.events_dead_letters[0].arn
    maxReceiveCount     = 5
  })
  tags = local.tags
}

# What EventBridge could not deliver to the events queue, and what sluice
# kept failing on. Nothing replays these (they are stale by the time anyone
# looks): they are kept a week, to find out why.
resource "aws_sqs_queue" "events_dead_letters" {
  count                     = local.events ? 1 : 0
  name                      = "${var.name}-events-dead-letters"
  kms_master_key_id         = aws_kms_key.this.arn
  message_retention_seconds = 604800
  tags                      = local.tags
}

# Only the two rules below may send, to either queue.
data "aws_iam_policy_document" "events_queues" {
  for_each = local.events_queues
  statement {
    actions   = ["sqs:SendMessage"]
    resources = [each.value.arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = local.events_rule_arns
    }
  }
}

resource "aws_sqs_queue_policy" "events_queues" {
  for_each  = local.events_queues
  queue_url = each.value.id
  policy    = data.aws_iam_policy_document.events_queues[each.key].json
}

# Every database's tables: sluice drops a table it does not know without a
# catalog call. An Iceberg commit is an UpdateTable; partition changes (Hive
# tables, often many) are of no use to sluice and are left out by name, so
# that a change of a kind Glue adds later still gets through.
resource "aws_cloudwatch_event_rule" "glue_tables" {
  count       = local.events ? 1 : 0
  name        = "${var.name}-glue-tables"
  description = "Glue tables that changed, to sluice's events queue"
  event_pattern = jsonencode({
    source        = ["aws.glue"]
    "detail-type" = ["Glue Data Catalog Table State Change"]
    detail = {
      typeOfChange = [{
        "anything-but" = [
          "CreatePartition", "BatchCreatePartition", "UpdatePartition",
          "BatchUpdatePartition", "DeletePartition", "BatchDeletePartition",
        ]
      }]
    }
  })
  tags = local.tags
}

# Only the jobs sluice runs: their names start with one of
# var.glue_job_name_prefixes (EventBridge's prefix matching).
resource "aws_cloudwatch_event_rule" "glue_jobs" {
  count       = local.events ? 1 : 0
  name        = "${var.name}-glue-jobs"
  description = "Glue runs of sluice's jobs that ended, to sluice's events queue"
  event_pattern = jsonencode({
    source        = ["aws.glue"]
    "detail-type" = ["Glue Job State Change"]
    detail = {
      jobName = [for prefix in var.glue_job_name_prefixes : { prefix = prefix }]
    }
  })
  tags = local.tags
}

# An hour of retries: by then the reconcile has caught up, and an event
# still undelivered tells of something broken, in the dead letters.
resource "aws_cloudwatch_event_target" "glue_tables" {
  count = local.events ? 1 : 0
  rule  = aws_cloudwatch_event_rule.glue_tables[0].name
  arn   = aws_sqs_queue.events[0].arn
  retry_policy {
    maximum_event_age_in_seconds = 3600
    maximum_retry_attempts       = 10
  }
  dead_letter_config {
    arn = aws_sqs_queue.events_dead_letters[0].arn
  }
}

resource "aws_cloudwatch_event_target" "glue_jobs" {
  count = local.events ? 1 : 0
  rule  = aws_cloudwatch_event_rule.glue_jobs[0].name
  arn   = aws_sqs_queue.events[0].arn
  retry_policy {
    maximum_event_age_in_seconds = 3600
    maximum_retry_attempts       = 10
  }
  dead_letter_config {
    arn = aws_sqs_queue.events_dead_letters[0].arn
  }
}
