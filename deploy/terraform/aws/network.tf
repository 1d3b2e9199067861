# Who may talk to whom: callers -> load balancer -> service -> database and
# the AWS APIs. Every rule is its own resource, described.

resource "aws_security_group" "load_balancer" {
  name        = "${var.name}-lb"
  description = "sluice's internal load balancer"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_security_group" "service" {
  name        = "${var.name}-service"
  description = "sluice's tasks"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_security_group" "database" {
  count       = local.create_database ? 1 : 0
  name        = "${var.name}-database"
  description = "sluice's Aurora PostgreSQL cluster"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

# Glue jobs that call sluice run with this group (through the network
# connection in glue.tf).
resource "aws_security_group" "glue_jobs" {
  # checkov:skip=CKV2_AWS_5:attached to the Glue connection (glue.tf), which checkov does not follow
  name        = "${var.name}-glue-jobs"
  description = "Glue jobs that call sluice"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "lb_from_glue" {
  security_group_id            = aws_security_group.load_balancer.id
  description                  = "HTTPS from Glue jobs"
  referenced_security_group_id = aws_security_group.glue_jobs.id
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
}

resource "aws_vpc_security_group_ingress_rule" "lb_from_callers" {
  for_each          = toset(var.caller_cidr_blocks)
  security_group_id = aws_security_group.load_balancer.id
  description       = "HTTPS from ${each.value}"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "lb_to_service" {
  security_group_id            = aws_security_group.load_balancer.id
  description                  = "To sluice's tasks"
  referenced_security_group_id = aws_security_group.service.id
  ip_protocol                  = "tcp"
  from_port                    = local.port
  to_port                      = local.port
}

resource "aws_vpc_security_group_ingress_rule" "service_from_lb" {
  security_group_id            = aws_security_group.service.id
  description                  = "The API, from the load balancer"
  referenced_security_group_id = aws_security_group.load_balancer.id
  ip_protocol                  = "tcp"
  from_port                    = local.port
  to_port                      = local.port
}

resource "aws_vpc_security_group_egress_rule" "service_to_aws" {
  security_group_id = aws_security_group.service.id
  description       = "AWS APIs (Glue, S3, Secrets Manager) and Iceberg REST catalogs over HTTPS"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "service_to_database" {
  security_group_id            = aws_security_group.service.id
  description                  = "PostgreSQL"
  referenced_security_group_id = local.create_database ? aws_security_group.database[0].id : null
  cidr_ipv4                    = local.create_database ? null : data.aws_vpc.this.cidr_block
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_vpc_security_group_ingress_rule" "database_from_service" {
  count                        = local.create_database ? 1 : 0
  security_group_id            = aws_security_group.database[0].id
  description                  = "PostgreSQL from sluice's tasks"
  referenced_security_group_id = aws_security_group.service.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

# Glue requires its connection's group to let the job's workers reach each
# other on every TCP port.
resource "aws_vpc_security_group_ingress_rule" "glue_self" {
  # checkov:skip=CKV_AWS_24:the source is this group itself, not 0.0.0.0/0
  # checkov:skip=CKV_AWS_25:the source is this group itself, not 0.0.0.0/0
  # checkov:skip=CKV_AWS_260:the source is this group itself, not 0.0.0.0/0
  security_group_id            = aws_security_group.glue_jobs.id
  description                  = "Glue workers of one job, to each other (required by Glue)"
  referenced_security_group_id = aws_security_group.glue_jobs.id
  ip_protocol                  = "tcp"
  from_port                    = 0
  to_port                      = 65535
}

resource "aws_vpc_security_group_egress_rule" "glue_self" {
  security_group_id            = aws_security_group.glue_jobs.id
  description                  = "Glue workers of one job, to each other (required by Glue)"
  referenced_security_group_id = aws_security_group.glue_jobs.id
  ip_protocol                  = "tcp"
  from_port                    = 0
  to_port                      = 65535
}

resource "aws_vpc_security_group_egress_rule" "glue_https" {
  security_group_id = aws_security_group.glue_jobs.id
  description       = "sluice's load balancer, S3 and the AWS APIs over HTTPS"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}
