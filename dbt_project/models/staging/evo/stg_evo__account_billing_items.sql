with

source as (

    select * from {{ source('evo', 'account_billing_items') }}

),

renamed as (

    select
        ----------  ids
        account_id,
        item as billing_item,

        ----------  numerics
        cast(base_cost as double) as base_cost,
        cast(raw_unit_multiplier as double) as raw_unit_multiplier,
        cast(unit_cost as double) as unit_cost,
        cast(allowance as double) as allowance,

        ----------  lineage
        cast(synced_at as timestamp with time zone) as synced_at

    from source

)

select * from renamed
