{#- Fails for every combination of `combination_of_columns` that occurs on more than one row:
    the test for a composite grain key (dbt_utils has one; this project uses no packages). -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

select
    {{ combination_of_columns | join(', ') }},
    count(*) as occurrences
from {{ model }}
group by {{ combination_of_columns | join(', ') }}
having count(*) > 1

{% endtest %}
