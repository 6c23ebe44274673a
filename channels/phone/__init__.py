"""Phone channel: call webhooks (generic JSON, Twilio, Bitrix24 telephony REST) parsed and
authenticated into `CallReport`s, and those turned into `InboundEvent`s. Pure: no HTTP, no DB."""
