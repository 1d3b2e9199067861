output "url" {
  description = "sluice's URL for Glue jobs and operators (pass it to jobs as --sluice-url, or let sluice pass it to the runs it starts)."
  value       = local.url
}

output "load_balancer_dns_name" {
  description = "The internal load balancer's DNS name: point domain_name at it when route53_zone_id is null."
  value       = aws_lb.this.dns_name
}

output "glue_connection_name" {
  description = "The Glue network connection to attach to jobs that call sluice (--connections)."
  value       = aws_glue_connection.this.name
}

output "glue_job_role_arn" {
  description = "A role for Glue jobs that call sluice: Glue's service policy, the lake's buckets, and the job tokens' secrets."
  value       = aws_iam_role.glue_job.arn
}

output "glue_security_group_id" {
  description = "The security group the Glue connection puts jobs in; the load balancer admits it."
  value       = aws_security_group.glue_jobs.id
}

output "service_security_group_id" {
  description = "sluice's tasks' security group (admit it on an existing database's group)."
  value       = aws_security_group.service.id
}

output "token_secret_arns" {
  description = "Secrets Manager secret of each token, by the key of var.tokens."
  value       = { for name, s in aws_secretsmanager_secret.token : name => s.arn }
}

output "token_names" {
  description = "The name each token has in sluice (`sluice token list`), by the key of var.tokens."
  value       = local.token_names
}

output "database_endpoint" {
  description = "The Aurora cluster's writer endpoint (null with an existing database)."
  value       = local.create_database ? aws_rds_cluster.this[0].endpoint : null
}

output "ecs_cluster_name" {
  description = "The ECS cluster."
  value       = aws_ecs_cluster.this.name
}

output "ecs_service_name" {
  description = "The ECS service."
  value       = aws_ecs_service.this.name
}

output "compaction_dead_letter_queue_url" {
  description = "Where scheduled compaction requests that sluice kept refusing end up (null without schedules)."
  value       = local.schedules ? aws_sqs_queue.compaction_dead_letters[0].url : null
}

output "events_queue_url" {
  description = "The SQS queue EventBridge sends Glue's table and job state changes to, which sluice's leader reads (null with aws_events false)."
  value       = local.events ? aws_sqs_queue.events[0].url : null
}

output "events_dead_letter_queue_url" {
  description = "Where events EventBridge could not deliver, or sluice kept failing on, end up (null with aws_events false)."
  value       = local.events ? aws_sqs_queue.events_dead_letters[0].url : null
}
