# Four roles: the tasks' execution role (pull the image, read the secrets),
# sluice's own (Glue, the warehouse, the events queue), the Glue jobs' (call
# sluice, read and write the lake), and the ones RDS monitoring and
# EventBridge run as.

data "aws_iam_policy_document" "ecs_tasks_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${var.name}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_trust.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid     = "Secrets"
    actions = ["secretsmanager:GetSecretValue"]
    resources = concat(
      [for s in aws_secretsmanager_secret.token : s.arn],
      compact([local.database_password_secret, var.database_url_secret_arn]),
    )
  }
  statement {
    sid       = "Decrypt"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.this.arn]
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "secrets"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

resource "aws_iam_role" "task" {
  name               = "${var.name}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_trust.json
  tags               = local.tags
}

data "aws_iam_policy_document" "task" {
  statement {
    sid       = "GlueRuns"
    actions   = ["glue:StartJobRun", "glue:GetJobRun", "glue:GetJobRuns", "glue:BatchStopJobRun", "glue:GetJob"]
    resources = local.glue_job_arns
  }
  statement {
    sid = "GlueCatalog"
    actions = [
      "glue:GetDatabase", "glue:GetDatabases", "glue:CreateDatabase",
      "glue:GetTable", "glue:GetTables", "glue:CreateTable", "glue:UpdateTable", "glue:DeleteTable",
    ]
    resources = [
      "arn:${local.partition}:glue:${local.region}:${local.account}:catalog",
      "arn:${local.partition}:glue:${local.region}:${local.account}:database/*",
      "arn:${local.partition}:glue:${local.region}:${local.account}:table/*/*",
    ]
  }
  statement {
    sid       = "WarehouseMetadata"
    actions   = ["s3:GetObject", "s3:ListBucket"]
    resources = concat(var.lake_bucket_arns, [for b in var.lake_bucket_arns : "${b}/*"])
  }
  # The leader reads the events queue (events.tf) and deletes what it has
  # handled; the queue is encrypted with the module's key, which SQS uses
  # on the reader's behalf.
  dynamic "statement" {
    for_each = local.events ? [1] : []
    content {
      sid       = "EventsQueue"
      actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
      resources = [aws_sqs_queue.events[0].arn]
    }
  }
  dynamic "statement" {
    for_each = local.events ? [1] : []
    content {
      sid       = "EventsQueueDecrypt"
      actions   = ["kms:Decrypt"]
      resources = [aws_kms_key.this.arn]
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["sqs.${local.region}.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "glue-and-lake"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

# The role Glue jobs that use sluice run as: Glue's own service policy, the
# lake, and the job token's secret.
data "aws_iam_policy_document" "glue_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["glue.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "glue_job" {
  name               = "${var.name}-glue-job"
  assume_role_policy = data.aws_iam_policy_document.glue_trust.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "glue_job" {
  role       = aws_iam_role.glue_job.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AWSGlueServiceRole"
}

data "aws_iam_policy_document" "glue_job" {
  statement {
    sid       = "Lake"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"]
    resources = concat(var.lake_bucket_arns, [for b in var.lake_bucket_arns : "${b}/*"])
  }
  statement {
    sid       = "SluiceToken"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [for name, s in aws_secretsmanager_secret.token : s.arn if var.tokens[name].role == "job"]
  }
  statement {
    sid       = "Decrypt"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.this.arn]
  }
}

resource "aws_iam_role_policy" "glue_job" {
  name   = "lake-and-sluice"
  role   = aws_iam_role.glue_job.id
  policy = data.aws_iam_policy_document.glue_job.json
}

data "aws_iam_policy_document" "rds_monitoring_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "rds_monitoring" {
  count              = local.create_database ? 1 : 0
  name               = "${var.name}-rds-monitoring"
  assume_role_policy = data.aws_iam_policy_document.rds_monitoring_trust.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  count      = local.create_database ? 1 : 0
  role       = aws_iam_role.rds_monitoring[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}
