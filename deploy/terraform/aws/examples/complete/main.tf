# sluice next to an existing VPC's Glue jobs, with a new Aurora cluster and
# a nightly compaction of one table:
#   terraform init && terraform apply -var-file=example.tfvars
terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.90"
    }
  }
}

provider "aws" {
  region = var.region
}

variable "region" {
  description = "The region of the VPC and the Glue jobs."
  type        = string
  default     = "eu-west-1"
}

variable "vpc_id" {
  description = "The VPC the Glue jobs run in."
  type        = string
}

variable "private_subnet_ids" {
  description = "Its private subnets, two zones or more."
  type        = list(string)
}

variable "image" {
  description = "The sluice image in your registry."
  type        = string
}

variable "domain_name" {
  description = "sluice's name, e.g. sluice.data.example.com."
  type        = string
}

variable "certificate_arn" {
  description = "ACM certificate for domain_name."
  type        = string
}

variable "route53_zone_id" {
  description = "The zone domain_name goes in."
  type        = string
}

variable "lake_bucket_arn" {
  description = "The warehouse bucket."
  type        = string
}

variable "load_balancer_logs_bucket" {
  description = "Bucket for the load balancer's access logs."
  type        = string
}

module "sluice" {
  source = "../.."

  vpc_id                    = var.vpc_id
  private_subnet_ids        = var.private_subnet_ids
  glue_connection_subnet_id = var.private_subnet_ids[0]
  image                     = var.image
  domain_name               = var.domain_name
  certificate_arn           = var.certificate_arn
  route53_zone_id           = var.route53_zone_id
  lake_bucket_arns          = [var.lake_bucket_arn]
  load_balancer_logs_bucket = var.load_balancer_logs_bucket

  tokens = {
    admin       = { role = "admin" }
    eventbridge = { role = "scheduler" }
    # Ingestion jobs may only touch the sales tables.
    sales-ingest = { role = "job", scopes = ["sales."] }
  }

  # The Glue catalog sluice reads the tables' snapshots from.
  config_toml = <<-EOT
    [iceberg]
    default_catalog = "prod"
    [catalogs.prod]
    kind = "glue"
    warehouse = "s3://${split(":::", var.lake_bucket_arn)[1]}/"
    region = "${var.region}"
  EOT

  # Every night at 03:00 UTC; sales.orders must name its compaction job
  # (PUT /v1/tables/sales.orders with "compaction_job").
  compaction_schedules = {
    sales-orders = { table = "sales.orders", schedule_expression = "cron(0 3 * * ? *)" }
  }

  tags = { team = "data-platform" }
}

output "sluice_url" {
  description = "Pass to Glue jobs as --sluice-url."
  value       = module.sluice.url
}

output "glue_connection_name" {
  description = "Attach to Glue jobs that call sluice."
  value       = module.sluice.glue_connection_name
}

output "glue_job_role_arn" {
  description = "The role for those jobs."
  value       = module.sluice.glue_job_role_arn
}

output "admin_token_secret_arn" {
  description = "The admin token, for the CLI and the dashboard."
  value       = module.sluice.token_secret_arns["admin"]
}
