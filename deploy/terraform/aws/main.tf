# sluice next to Glue: the service on ECS Fargate behind an internal load
# balancer, its database (Aurora PostgreSQL, or one of yours), its tokens in
# Secrets Manager, what Glue jobs need to reach it, and EventBridge rules
# that ask it to compact tables on a cron.

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
}

# One key for what the module keeps at rest: secrets, logs, the database,
# the dead letters.
resource "aws_kms_key" "this" {
  description         = "${var.name}: secrets, logs, database"
  enable_key_rotation = true
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
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
    ]
  })
  tags = local.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}
