terraform {
  required_version = ">= 1.6"
  required_providers {
    # 5.90 or later: EventBridge connections to private endpoints (VPC
    # Lattice resource configurations).
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.90"
    }
  }
}
