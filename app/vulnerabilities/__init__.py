"""The vulnerability ranking: minerals ranked by exposure per country and jointly."""
