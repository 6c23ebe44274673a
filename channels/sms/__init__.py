"""Twilio SMS: customers' text messages in (the incoming-message webhook), reps' answers out
(Twilio's Messages REST API). See docs/channels/sms.md."""
