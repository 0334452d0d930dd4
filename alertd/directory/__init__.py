"""The directory: residents (who lives where, their language, who needs care first)
and staff with their on-call rotations. Phone numbers are personal data: masked in all
output unless a command is explicitly asked for them."""
