# sluice next to Glue: the service on ECS Fargate behind an internal load
# balancer, its database (Aurora PostgreSQL, or one of yours), its tokens in
# Secrets Manager, what Glue jobs need to reach it, EventBridge rules that
# ask it to compact tables on a cron, and an SQS queue of Glue's table and
# job changes that hasten its reconcile and its run polls.

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

data "aws_vpc" "this" {
  id = var.vpc_id
}

locals {
  create_database = var.database_url_secret_arn == null
  account         = data.aws_caller_identity.current.account_id
  region          = data.aws_region.current.id
  partition       = data.aws_partition.current.partition
  url             = "https://${var.domain_name}"
  port            = 7878
  glue_job_arns = [
    for prefix in var.glue_job_name_prefixes :
    "arn:${local.partition}:glue:${local.region}:${local.account}:job/${prefix}*"
  ]
  tags = merge(var.tags, { "app.kubernetes.io/name" = "sluice" })
  # The EventBridge rules that send to a queue the key encrypts.
  kms_event_rules = concat(
    local.schedules ? ["arn:${local.partition}:events:${local.region}:${local.account}:rule/${var.name}-compact-*"] : [],
    local.events_rule_arns,
  )
}

# One key for what the module keeps at rest: secrets, logs, the database,
# the queues.
resource "aws_kms_key" "this" {
  description         = "${var.name}: secrets, logs, database, queues"
  enable_key_rotation = true
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [
        {
          Sid       = "Account"
          Effect    = "Allow"
          Principal = { AWS = "arn:${local.partition}:iam::${local.account}:root" }
          Action    = "kms:*"
          Resource  = "*"
        },
        {
          Sid       = "Logs"
          Effect    = "Allow"
          Principal = { Service = "logs.${local.region}.amazonaws.com" }
          Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
          Resource  = "*"
          Condition = {
            ArnLike = { "kms:EncryptionContext:aws:logs:arn" = "arn:${local.partition}:logs:${local.region}:${local.account}:log-group:/${var.name}/*" }
          }
        },
      ],
      # EventBridge encrypts what its rules send to the module's queues: the
      # events (events.tf) and the compaction dead letters (schedules.tf).
      length(local.kms_event_rules) == 0 ? [] : [
        {
          Sid       = "EventBridge"
          Effect    = "Allow"
          Principal = { Service = "events.amazonaws.com" }
          Action    = ["kms:GenerateDataKey", "kms:Decrypt"]
          Resource  = "*"
          Condition = {
            ArnLike = { "aws:SourceArn" = local.kms_event_rules }
          }
        },
      ],
    )
  })
  tags = local.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}
