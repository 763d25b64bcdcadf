"""The supply vulnerability register: dependency profiles per mineral and co-lead
country, each ministry's countries of concern, and the CSV import (SPEC §12)."""
