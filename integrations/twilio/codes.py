"""Twilio's error codes, by whom they are about."""

#: about one number: no retry can fix them, and the directory keeps them
NUMBER_CODES = {
    21211: "invalid number",
    21614: "not a mobile number",
    21610: "unsubscribed (STOP)",
    21612: "cannot route to this number",
}
#: about the message or the account's settings for a region, not the number: failed,
#: not flagged
MESSAGE_CODES = {21408: "sending to this region is not enabled on the account"}
#: the whole account, for every number: the lane stops until it is fixed
ACCOUNT_CODES = {
    20003: "authentication failed (check the account SID and auth token)",
    20005: "the account is not active",
    20008: "test credentials cannot do this",
    21606: "the From number is not valid for this account",
    21608: "the account may only text verified numbers (trial)",
}
#: rate limits of the account: the lane pauses
THROTTLE_CODES = {20429: "too many requests", 14107: "SMS rate limit exceeded"}
