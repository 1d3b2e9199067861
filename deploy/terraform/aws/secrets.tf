# Each token is generated here (Secrets Manager's GetRandomPassword), kept in
# Secrets Manager and imported into sluice by a one-shot container at every
# task start (`sluice token import`, which does nothing when the token is
# there already). A token's sluice name carries its secret version, so that
# replacing the token (taint its aws_secretsmanager_secret_version) adds a
# new one beside the old: revoke the old one with `sluice token revoke` once
# nothing uses it.

data "aws_secretsmanager_random_password" "token" {
  for_each            = var.tokens
  password_length     = 64
  exclude_punctuation = true
  include_space       = false
}

resource "aws_secretsmanager_secret" "token" {
  # checkov:skip=CKV2_AWS_57:sluice tokens are rotated by replacing them (see above), not by a rotation Lambda
  for_each                = var.tokens
  name                    = "${var.name}/tokens/${each.key}"
  description             = "sluice bearer token for ${each.key} (role ${each.value.role})"
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = 7
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "token" {
  for_each  = var.tokens
  secret_id = aws_secretsmanager_secret.token[each.key].id
  # sluice_<16>_<48>: the shape `sluice token import` takes.
  secret_string = format(
    "sluice_%s_%s",
    substr(data.aws_secretsmanager_random_password.token[each.key].random_password, 0, 16),
    substr(data.aws_secretsmanager_random_password.token[each.key].random_password, 16, 48),
  )
  # A new password is drawn at every plan: the stored token changes only
  # when this version is replaced.
  lifecycle {
    ignore_changes = [secret_string]
  }
}

locals {
  token_values = { for name, v in aws_secretsmanager_secret_version.token : name => v.secret_string }
  token_names = {
    for name, v in aws_secretsmanager_secret_version.token :
    name => "${name}-${substr(md5(v.version_id), 0, 8)}"
  }
}
