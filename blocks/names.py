"""The names `feedback-ops up` saves the blocks under: the flows' default parameters.

A flow takes the name of each block it uses (`database_block`, `storage_block`, …), so
an operator can point one run at other blocks; these are the names it uses otherwise.
"""

from __future__ import annotations

PLATFORM_DATABASE_BLOCK = "platform-postgres"
OPS_DATABASE_BLOCK = "ops-postgres"
BACKUP_STORAGE_BLOCK = "backup-storage"
REDIS_BLOCK = "platform-redis"
POS_PROVIDERS_BLOCK = "pos-providers"
POS_TOKENS_BLOCK = "pos-tokens"
GATEWAY_BLOCK = "platform-gateway"
CONFIG_KEY_BLOCK = "config-backup-key"
ALERT_CHANNELS_BLOCK = "alert-channels"
SLACK_BLOCK = "slack-alerts"
EMAIL_BLOCK = "email-alerts"
PAGERDUTY_BLOCK = "pagerduty-alerts"
SMS_BLOCK = "sms-alerts"
CONTACTS_BLOCK = "escalation-contacts"
WEBHOOK_DELIVERIES_BLOCK = "webhook-deliveries"
METRICS_BLOCK = "metrics-pushgateway"
WORK_POOL_FAILOVER_BLOCK = "work-pool-failover"
DR_BLOCK = "disaster-recovery"
