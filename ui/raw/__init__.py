"""Raw MQTT: the message log, subscriptions and the publish box."""
