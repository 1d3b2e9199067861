# Each token is generated here, kept in Secrets Manager and imported into
# sluice by a one-shot container at every task start (`sluice token import`,
# which does nothing when the token is there already). A token's sluice name
# carries its random id, so that replacing the token (taint its
# random_password) adds a new one beside the old: revoke the old one with
# `sluice token revoke` once nothing uses it.

resource "random_id" "token" {
  for_each    = var.tokens
  byte_length = 8
}

resource "random_password" "token" {
  for_each = var.tokens
  length   = 48
  special  = false
}

locals {
  token_values = {
    for name, t in var.tokens :
    name => "sluice_${random_id.token[name].hex}_${random_password.token[name].result}"
  }
  token_names = { for name, t in var.tokens : name => "${name}-${random_id.token[name].hex}" }
}

resource "aws_secretsmanager_secret" "token" {
  # checkov:skip=CKV2_AWS_57:sluice tokens are rotated by replacing them (see above), not by a rotation Lambda
  for_each                = var.tokens
  name                    = "${var.name}/tokens/${each.key}"
  description             = "sluice bearer token `${local.token_names[each.key]}` (role ${each.value.role})"
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = 7
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "token" {
  for_each      = var.tokens
  secret_id     = aws_secretsmanager_secret.token[each.key].id
  secret_string = local.token_values[each.key]
}
