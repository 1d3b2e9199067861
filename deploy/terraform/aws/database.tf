# Aurora PostgreSQL, unless var.database_url_secret_arn names a database of
# yours. RDS keeps the master password in its own Secrets Manager secret and
# rotates it; sluice's URL carries no password and the tasks get it as
# PGPASSWORD (PostgreSQL's variable, which sluice's driver reads).

resource "aws_db_subnet_group" "this" {
  count      = local.create_database ? 1 : 0
  name       = var.name
  subnet_ids = var.private_subnet_ids
  tags       = local.tags
}

# Log every statement that changes the schema and every slow one.
resource "aws_rds_cluster_parameter_group" "this" {
  count  = local.create_database ? 1 : 0
  name   = var.name
  family = "aurora-postgresql${split(".", var.aurora_engine_version)[0]}"
  parameter {
    name  = "log_statement"
    value = "ddl"
  }
  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }
  tags = local.tags
}

resource "aws_rds_cluster" "this" {
  # checkov:skip=CKV2_AWS_8:Aurora's own continuous backups (14 days, to the second) cover it; add the cluster to your organization's AWS Backup plan if there is one
  count                               = local.create_database ? 1 : 0
  cluster_identifier                  = var.name
  engine                              = "aurora-postgresql"
  engine_version                      = var.aurora_engine_version
  database_name                       = "sluice"
  master_username                     = "sluice"
  manage_master_user_password         = true
  master_user_secret_kms_key_id       = aws_kms_key.this.arn
  db_subnet_group_name                = aws_db_subnet_group.this[0].name
  db_cluster_parameter_group_name     = aws_rds_cluster_parameter_group.this[0].name
  vpc_security_group_ids              = [aws_security_group.database[0].id]
  storage_encrypted                   = true
  kms_key_id                          = aws_kms_key.this.arn
  iam_database_authentication_enabled = true
  backup_retention_period             = 14
  preferred_backup_window             = "02:00-03:00"
  copy_tags_to_snapshot               = true
  deletion_protection                 = var.deletion_protection
  skip_final_snapshot                 = false
  final_snapshot_identifier           = "${var.name}-final"
  enabled_cloudwatch_logs_exports     = ["postgresql"]
  tags                                = local.tags
}

resource "aws_rds_cluster_instance" "this" {
  count                                 = local.create_database ? var.aurora_instances : 0
  identifier                            = "${var.name}-${count.index}"
  cluster_identifier                    = aws_rds_cluster.this[0].id
  engine                                = aws_rds_cluster.this[0].engine
  engine_version                        = aws_rds_cluster.this[0].engine_version
  instance_class                        = var.aurora_instance_class
  db_subnet_group_name                  = aws_db_subnet_group.this[0].name
  publicly_accessible                   = false
  auto_minor_version_upgrade            = true
  monitoring_interval                   = 30
  monitoring_role_arn                   = aws_iam_role.rds_monitoring[0].arn
  performance_insights_enabled          = true
  performance_insights_kms_key_id       = aws_kms_key.this.arn
  performance_insights_retention_period = 7
  tags                                  = local.tags
}

locals {
  # sluice's URL without its password (PGPASSWORD brings it).
  database_url             = local.create_database ? "postgres://sluice@${aws_rds_cluster.this[0].endpoint}:5432/sluice?sslmode=require" : null
  database_password_secret = local.create_database ? aws_rds_cluster.this[0].master_user_secret[0].secret_arn : null
}
