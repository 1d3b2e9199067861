# The service: every task runs `sluice migrate`, then imports the tokens
# and makes IAM authentication's principal rules, then serves. Migrations take a lock in the database, so tasks starting
# together apply them once; both one-shots do nothing when there is nothing
# to do.

resource "aws_cloudwatch_log_group" "this" {
  name              = "/${var.name}/service"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = local.tags
}

resource "aws_ecs_cluster" "this" {
  name = var.name
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
  tags = local.tags
}

locals {
  log_configuration = {
    logDriver = "awslogs"
    options = {
      awslogs-group         = aws_cloudwatch_log_group.this.name
      awslogs-region        = local.region
      awslogs-stream-prefix = "sluice"
    }
  }
  # What every sluice container needs: the database and the configuration.
  environment = concat(
    [
      { name = "SLUICE__SERVER__AUTH", value = "on" },
      { name = "SLUICE__SCHEDULER__ADVERTISE_URL", value = local.url },
      { name = "AWS_REGION", value = local.region },
    ],
    var.aws_auth_server_id == null ? [] : [{ name = "SLUICE__AWS_AUTH__SERVER_ID", value = var.aws_auth_server_id }],
    local.create_database ? [{ name = "SLUICE__DATABASE__URL", value = local.database_url }] : [],
    var.config_toml == "" ? [] : [{ name = "SLUICE_CONFIG_TOML", value = var.config_toml }],
  )
  # Only serve reads the events queue (events.tf), on the leader.
  serve_environment = concat(
    local.environment,
    local.events ? [{ name = "SLUICE__EVENTS__QUEUE_URL", value = aws_sqs_queue.events[0].url }] : [],
  )
  database_secrets = local.create_database ? [
    { name = "PGPASSWORD", valueFrom = "${local.database_password_secret}:password::" },
    ] : [
    { name = "SLUICE__DATABASE__URL", valueFrom = var.database_url_secret_arn },
  ]
  one_shot = {
    image                  = var.image
    essential              = false
    readonlyRootFilesystem = true
    user                   = "65532:65532"
    logConfiguration       = local.log_configuration
  }
  token_containers = [
    for name, t in var.tokens : merge(local.one_shot, {
      name = "token-${name}"
      command = concat(
        ["token", "import", "--name", local.token_names[name], "--role", t.role],
        flatten([for s in t.scopes : ["--scope", s]]),
        ["--from-env", "SLUICE_IMPORT_TOKEN"],
      )
      environment = local.environment
      secrets = concat(local.database_secrets, [
        { name = "SLUICE_IMPORT_TOKEN", valueFrom = aws_secretsmanager_secret.token[name].arn },
      ])
      dependsOn = [{ containerName = "migrate", condition = "SUCCESS" }]
    })
  ]
  # IAM authentication's rules, made (or found made) at every start.
  principals = var.aws_auth_server_id == null ? {} : merge(
    { (aws_iam_role.glue_job.arn) = { role = "job", scopes = [] } },
    var.aws_principals,
  )
  principal_containers = [
    for i, pattern in sort(keys(local.principals)) : merge(local.one_shot, {
      name = "principal-${i}"
      command = concat(
        ["principal", "create", "--aws-arn", pattern, "--role", local.principals[pattern].role],
        flatten([for s in local.principals[pattern].scopes : ["--scope", s]]),
      )
      environment = local.environment
      secrets     = local.database_secrets
      dependsOn   = [{ containerName = "migrate", condition = "SUCCESS" }]
    })
  ]
  containers = concat(
    [merge(local.one_shot, {
      name        = "migrate"
      command     = ["migrate"]
      environment = local.environment
      secrets     = local.database_secrets
    })],
    local.token_containers,
    local.principal_containers,
    [{
      name                   = "sluice"
      image                  = var.image
      essential              = true
      command                = ["serve"]
      readonlyRootFilesystem = true
      user                   = "65532:65532"
      portMappings           = [{ containerPort = local.port, protocol = "tcp" }]
      environment            = local.serve_environment
      secrets                = local.database_secrets
      logConfiguration       = local.log_configuration
      # sluice drains in-flight requests for 10 s on SIGTERM, then its
      # scheduler resigns (up to 5 s).
      stopTimeout = 30
      healthCheck = {
        command     = ["CMD", "/usr/local/bin/sluice", "healthcheck"]
        interval    = 10
        timeout     = 5
        retries     = 3
        startPeriod = 30
      }
      dependsOn = [
        for c in concat([{ name = "migrate" }], local.token_containers, local.principal_containers) :
        { containerName = c.name, condition = "SUCCESS" }
      ]
    }],
  )
}

resource "aws_ecs_task_definition" "this" {
  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  container_definitions    = jsonencode(local.containers)
  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }
  tags = local.tags
}

resource "aws_ecs_service" "this" {
  name                              = var.name
  cluster                           = aws_ecs_cluster.this.id
  task_definition                   = aws_ecs_task_definition.this.arn
  desired_count                     = var.desired_count
  launch_type                       = "FARGATE"
  platform_version                  = "LATEST"
  health_check_grace_period_seconds = 60
  enable_execute_command            = false
  propagate_tags                    = "SERVICE"
  # One new task before an old one stops: the API never loses capacity.
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.service.id]
    assign_public_ip = false
  }
  load_balancer {
    target_group_arn = aws_lb_target_group.this.arn
    container_name   = "sluice"
    container_port   = local.port
  }
  depends_on = [aws_lb_listener.https]
  tags       = local.tags
}
