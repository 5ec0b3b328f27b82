"""Word of mouth (口碑): referral codes, attribution, rewards; surprise rewards (惊喜服务)."""
