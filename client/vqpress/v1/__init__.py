"""Generated from protos/vqpress/v1 by `make proto`. Do not edit."""
