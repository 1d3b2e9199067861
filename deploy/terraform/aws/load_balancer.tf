# The internal load balancer Glue jobs, operators and EventBridge call.
# Its idle timeout outlasts sluice's longest long-poll (300 s).

resource "aws_lb" "this" {
  # checkov:skip=CKV2_AWS_28:internal load balancer, reachable only from the VPC's security groups; put a WAF in front if callers from outside the VPC are allowed
  name                       = var.name
  internal                   = true
  load_balancer_type         = "application"
  subnets                    = var.private_subnet_ids
  security_groups            = [aws_security_group.load_balancer.id]
  drop_invalid_header_fields = true
  idle_timeout               = 360
  enable_deletion_protection = var.deletion_protection
  access_logs {
    bucket  = var.load_balancer_logs_bucket
    prefix  = var.name
    enabled = true
  }
  tags = local.tags
}

resource "aws_lb_target_group" "this" {
  # checkov:skip=CKV_AWS_378:TLS ends at the load balancer; the hop to the task stays inside the VPC, between two security groups
  name        = var.name
  port        = local.port
  protocol    = "HTTP"
  target_type = "ip"
  vpc_id      = var.vpc_id
  # Shorter than sluice's 10 s drain plus the scheduler's resignation, so
  # that a stopping task is out of rotation before it stops answering.
  deregistration_delay = 20
  health_check {
    path                = "/readyz"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
  tags = local.tags
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this.arn
  }
  tags = local.tags
}

resource "aws_route53_record" "this" {
  count   = var.route53_zone_id == null ? 0 : 1
  zone_id = var.route53_zone_id
  name    = var.domain_name
  type    = "A"
  alias {
    name                   = aws_lb.this.dns_name
    zone_id                = aws_lb.this.zone_id
    evaluate_target_health = true
  }
}
