# What a Glue job needs to reach sluice: a network connection into the VPC
# with the glue_jobs security group (attach it to the job with
# `--connections`), and the glue_job role (iam.tf).

data "aws_subnet" "glue" {
  id = var.glue_connection_subnet_id
}

resource "aws_glue_connection" "this" {
  name            = "${var.name}-network"
  description     = "Glue jobs in the VPC, allowed to call sluice"
  connection_type = "NETWORK"
  physical_connection_requirements {
    availability_zone      = data.aws_subnet.glue.availability_zone
    subnet_id              = data.aws_subnet.glue.id
    security_group_id_list = [aws_security_group.glue_jobs.id]
  }
  tags = local.tags
}
