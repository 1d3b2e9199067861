variable "name" {
  description = "Prefix of every resource's name."
  type        = string
  default     = "sluice"
}

variable "vpc_id" {
  description = "The VPC that sluice, its database and the Glue jobs that call it share."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets, in two or more availability zones, for the service, its load balancer and the database."
  type        = list(string)
}

variable "image" {
  description = "The sluice image (built from deploy/docker/Dockerfile), pinned by tag or digest: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/sluice:0.1.0."
  type        = string
}

variable "desired_count" {
  description = "Replicas of the service. They share the database; one of them leads the scheduler."
  type        = number
  default     = 3
}

variable "cpu" {
  description = "Fargate CPU units per replica."
  type        = number
  default     = 1024
}

variable "memory" {
  description = "Fargate memory per replica, MiB."
  type        = number
  default     = 2048
}

variable "database_url_secret_arn" {
  description = "An existing database: the ARN of a Secrets Manager secret whose value is its postgres:// URL (password included). Null: the module creates an Aurora PostgreSQL cluster."
  type        = string
  default     = null
}

variable "aurora_engine_version" {
  description = "Aurora PostgreSQL engine version."
  type        = string
  default     = "16.6"
}

variable "aurora_instance_class" {
  description = "Instance class of the Aurora writer and readers."
  type        = string
  default     = "db.r7g.large"
}

variable "aurora_instances" {
  description = "Aurora instances: one writer, the rest readers in other zones (a failover target)."
  type        = number
  default     = 2
}

variable "domain_name" {
  description = "The name Glue jobs and EventBridge call sluice at (https://DOMAIN_NAME); the certificate must cover it. With compaction_schedules it must resolve publicly: an alias of the internal load balancer in a public zone resolves to its private addresses."
  type        = string
}

variable "certificate_arn" {
  description = "ACM certificate for domain_name, served by the internal load balancer."
  type        = string
}

variable "route53_zone_id" {
  description = "The hosted zone to put domain_name in, as an alias of the load balancer. Null: make the record yourself."
  type        = string
  default     = null
}

variable "caller_cidr_blocks" {
  description = "Networks other than the Glue jobs' security group that may call sluice (operators, schedulers, peered VPCs)."
  type        = list(string)
  default     = []
}

variable "glue_connection_subnet_id" {
  description = "The subnet of the Glue network connection the jobs run in (one of private_subnet_ids, usually)."
  type        = string
}

variable "glue_job_name_prefixes" {
  description = "sluice may start, follow and stop the Glue jobs whose names start with these."
  type        = list(string)
  default     = ["ingest-", "compact-", "hydrate-"]
  # sluice's policy and the job events' rule are written with them: neither
  # can be empty.
  validation {
    condition     = length(var.glue_job_name_prefixes) > 0
    error_message = "glue_job_name_prefixes needs one prefix or more."
  }
}

variable "lake_bucket_arns" {
  description = "The S3 buckets of the Iceberg warehouse: sluice reads table metadata there; the Glue job role reads and writes them."
  type        = list(string)
}

variable "tokens" {
  description = "Bearer tokens the module generates, keeps in Secrets Manager and imports into sluice at every task start: name => role (job, scheduler, operator or admin) and table-prefix scopes (empty: every table)."
  type = map(object({
    role   = string
    scopes = optional(list(string), [])
  }))
  default = {
    admin       = { role = "admin" }
    eventbridge = { role = "scheduler" }
    glue-jobs   = { role = "job" }
  }
  validation {
    condition     = alltrue([for t in values(var.tokens) : contains(["job", "scheduler", "operator", "admin"], t.role)])
    error_message = "Each token's role must be job, scheduler, operator or admin."
  }
}

variable "aws_auth_server_id" {
  description = "IAM authentication's server id: Glue jobs sign it to log in with their role instead of a token. Null: IAM authentication off."
  type        = string
  default     = "sluice"
}

variable "aws_principals" {
  description = "More IAM ARN patterns (wildcards * and ?) that log in as sluice principals: pattern => role and table-prefix scopes. The module's Glue job role is always one (role job, every table)."
  type = map(object({
    role   = string
    scopes = optional(list(string), [])
  }))
  default = {}
}

variable "config_toml" {
  description = "sluice's configuration file (TOML), passed as SLUICE_CONFIG_TOML: catalogs, scheduler and server settings. The module sets the database, auth, the advertised URL and the region through environment variables, which override the file."
  type        = string
  default     = ""
}

variable "compaction_schedules" {
  description = "Compactions EventBridge asks sluice for: name => the table and an EventBridge schedule expression (cron(0 3 * * ? *)). The table must name its compaction job in sluice."
  type = map(object({
    table               = string
    schedule_expression = string
  }))
  default = {}
}

variable "compaction_token" {
  description = "The key of var.tokens whose token EventBridge sends (a scheduler or admin token)."
  type        = string
  default     = "eventbridge"
}

variable "aws_events" {
  description = "EventBridge sends Glue's table and job state changes to an SQS queue sluice's leader reads: a changed table is refreshed, an ended run read, at once rather than at the next listing reconcile or run poll (which keep running: the events are best effort)."
  type        = bool
  default     = true
}

variable "log_retention_days" {
  description = "Days the service's logs are kept."
  type        = number
  default     = 365
}

variable "load_balancer_logs_bucket" {
  description = "S3 bucket for the load balancer's access logs (its policy must let Elastic Load Balancing write)."
  type        = string
}

variable "deletion_protection" {
  description = "Protect the database and the load balancer from deletion."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
