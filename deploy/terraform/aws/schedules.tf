# Scheduled compactions: an EventBridge rule per entry of
# var.compaction_schedules POSTs /v1/tables/TABLE/compactions through an API
# destination. sluice is internal, so the destination's connection reaches it
# privately, through a VPC Lattice resource gateway in the VPC (EventBridge
# Scheduler's targets do not include API destinations; scheduled rules do).
# An answer of 200 (one is pending already) or 201 is success; a refusal is
# retried by EventBridge, then kept in the dead-letter queue.

locals {
  schedules = length(var.compaction_schedules) > 0
}

resource "aws_security_group" "resource_gateway" {
  count       = local.schedules ? 1 : 0
  name        = "${var.name}-eventbridge"
  description = "EventBridge's way into the VPC, to sluice's load balancer"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_egress_rule" "resource_gateway_to_lb" {
  count                        = local.schedules ? 1 : 0
  security_group_id            = aws_security_group.resource_gateway[0].id
  description                  = "HTTPS to sluice's load balancer"
  referenced_security_group_id = aws_security_group.load_balancer.id
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
}

resource "aws_vpc_security_group_ingress_rule" "lb_from_resource_gateway" {
  count                        = local.schedules ? 1 : 0
  security_group_id            = aws_security_group.load_balancer.id
  description                  = "HTTPS from EventBridge's resource gateway"
  referenced_security_group_id = aws_security_group.resource_gateway[0].id
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
}

resource "aws_vpclattice_resource_gateway" "this" {
  count              = local.schedules ? 1 : 0
  name               = "${var.name}-eventbridge"
  vpc_id             = var.vpc_id
  subnet_ids         = var.private_subnet_ids
  security_group_ids = [aws_security_group.resource_gateway[0].id]
  tags               = local.tags
}

# domain_name must resolve (publicly) to the load balancer's private
# addresses: an alias record in a public zone does that.
resource "aws_vpclattice_resource_configuration" "this" {
  count                       = local.schedules ? 1 : 0
  name                        = "${var.name}-api"
  resource_gateway_identifier = aws_vpclattice_resource_gateway.this[0].id
  port_ranges                 = ["443"]
  protocol                    = "TCP"
  resource_configuration_definition {
    dns_resource {
      domain_name     = var.domain_name
      ip_address_type = "IPV4"
    }
  }
  tags = local.tags
}

resource "aws_cloudwatch_event_connection" "this" {
  count              = local.schedules ? 1 : 0
  name               = "${var.name}-api"
  description        = "sluice's API with the ${var.compaction_token} token"
  authorization_type = "API_KEY"
  kms_key_identifier = aws_kms_key.this.arn
  auth_parameters {
    api_key {
      key   = "Authorization"
      value = "Bearer ${local.token_values[var.compaction_token]}"
    }
  }
  invocation_connectivity_parameters {
    resource_parameters {
      resource_configuration_arn = aws_vpclattice_resource_configuration.this[0].arn
    }
  }
}

resource "aws_cloudwatch_event_api_destination" "compactions" {
  count                            = local.schedules ? 1 : 0
  name                             = "${var.name}-compactions"
  description                      = "POST /v1/tables/TABLE/compactions"
  connection_arn                   = aws_cloudwatch_event_connection.this[0].arn
  invocation_endpoint              = "${local.url}/v1/tables/*/compactions"
  http_method                      = "POST"
  invocation_rate_limit_per_second = 5
}

resource "aws_sqs_queue" "compaction_dead_letters" {
  count                     = local.schedules ? 1 : 0
  name                      = "${var.name}-compaction-dead-letters"
  kms_master_key_id         = aws_kms_key.this.arn
  message_retention_seconds = 1209600
  tags                      = local.tags
}

data "aws_iam_policy_document" "dead_letters" {
  count = local.schedules ? 1 : 0
  statement {
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.compaction_dead_letters[0].arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:events:${local.region}:${local.account}:rule/${var.name}-compact-*"]
    }
  }
}

resource "aws_sqs_queue_policy" "compaction_dead_letters" {
  count     = local.schedules ? 1 : 0
  queue_url = aws_sqs_queue.compaction_dead_letters[0].id
  policy    = data.aws_iam_policy_document.dead_letters[0].json
}

data "aws_iam_policy_document" "events_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_iam_role" "events" {
  count              = local.schedules ? 1 : 0
  name               = "${var.name}-eventbridge"
  assume_role_policy = data.aws_iam_policy_document.events_trust.json
  tags               = local.tags
}

data "aws_iam_policy_document" "events" {
  count = local.schedules ? 1 : 0
  statement {
    actions   = ["events:InvokeApiDestination"]
    resources = ["${aws_cloudwatch_event_api_destination.compactions[0].arn}/*"]
  }
}

resource "aws_iam_role_policy" "events" {
  count  = local.schedules ? 1 : 0
  name   = "invoke-sluice"
  role   = aws_iam_role.events[0].id
  policy = data.aws_iam_policy_document.events[0].json
}

resource "aws_cloudwatch_event_rule" "compact" {
  for_each            = var.compaction_schedules
  name                = "${var.name}-compact-${each.key}"
  description         = "Ask sluice to compact ${each.value.table}"
  schedule_expression = each.value.schedule_expression
  tags                = local.tags
}

resource "aws_cloudwatch_event_target" "compact" {
  for_each = var.compaction_schedules
  rule     = aws_cloudwatch_event_rule.compact[each.key].name
  arn      = aws_cloudwatch_event_api_destination.compactions[0].arn
  role_arn = aws_iam_role.events[0].arn
  # The body sluice's compaction request takes.
  input = jsonencode({
    requested_by = "eventbridge/${each.key}"
    reason       = "scheduled: ${each.value.schedule_expression}"
  })
  http_target {
    path_parameter_values = [each.value.table]
  }
  retry_policy {
    maximum_event_age_in_seconds = 3600
    maximum_retry_attempts       = 10
  }
  dead_letter_config {
    arn = aws_sqs_queue.compaction_dead_letters[0].arn
  }
}
